"""Characters that render as nothing: zero-width and other format characters,
bidi controls and Unicode tag characters.

One definition serves the detector that reports them, the injection
normalizer that reads past them, and ``folding``, which removes them from the
text the other detectors see.
"""

from __future__ import annotations

import re

# Soft hyphen, combining grapheme joiner, Arabic letter mark, Mongolian vowel
# separator, zero-width space/joiners/marks, invisible operators, BOM.
ZERO_WIDTH = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u2060-\u2064\ufeff"
BIDI = "\u202a-\u202e\u2066-\u2069"
TAGS = "\U000e0000-\U000e007f"
# One character class repeated: cannot backtrack, linear with Python's re.
INVISIBLE_RUN = re.compile(f"[{ZERO_WIDTH}{BIDI}{TAGS}]+")
