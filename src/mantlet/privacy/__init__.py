"""Privacy: reversible pseudonymization (vault, surrogates, streaming
restore) and irreversible anonymization of text and structured data. Sits at
the pipeline's level: it uses the PII detector and is used by the gateway
and the CLI."""

from mantlet.privacy.anonymize import Method, apply, hmac_token, mask, transform_for
from mantlet.privacy.pseudonymize import Pseudonymizer, Restorer, StreamRestorer
from mantlet.privacy.structured import StructuredAnonymizer
from mantlet.privacy.surrogates import SurrogateStyle
from mantlet.privacy.vault import Vault, VaultError, generate_key, load_or_create_key

__all__ = [
    "Method",
    "Pseudonymizer",
    "Restorer",
    "StreamRestorer",
    "StructuredAnonymizer",
    "SurrogateStyle",
    "Vault",
    "VaultError",
    "apply",
    "generate_key",
    "hmac_token",
    "load_or_create_key",
    "mask",
    "transform_for",
]
