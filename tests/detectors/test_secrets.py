"""The secrets detector, row by row.

Example credentials are generated at test time from a seeded RNG, so the
repository holds no string shaped like a live key (and secret scanners that
guard pushes stay quiet), while every run sees the same values.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time

import pytest

from mantlet.core.registry import create
from mantlet.core.types import ScanContext
from mantlet.detectors.secrets import SecretsDetector, SecretsOptions
from mantlet.detectors.secrets.rules import builtin_rules
from mantlet.detectors.secrets.validators import shannon_entropy
from mantlet.errors import ConfigError

_rng = random.Random(20241125)
UP, LO, DI = string.ascii_uppercase, string.ascii_lowercase, string.digits
AN = UP + LO + DI
HEX = "0123456789abcdef"
B32 = UP + "234567"


def tok(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def b64url(obj: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def pem(label: str) -> str:
    body = "\n".join(tok(AN + "+/", 64) for _ in range(4))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


JWT = ".".join([b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "42"}), tok(AN + "_-", 43)])

# rule id -> (text, the exact secret the finding must cover)
POSITIVES: dict[str, tuple[str, str]] = {}


def case(rule: str, template: str, secret: str) -> None:
    POSITIVES[rule] = (template.format(s=secret), secret)


case("pem-private-key", "key:\n{s}\nbye", pem("RSA PRIVATE KEY"))
case(
    "putty-private-key",
    "{s}",
    f"PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\n{tok(AN, 64)}\n"
    f"Private-MAC: {tok(HEX, 40)}",
)
case(
    "age-secret-key",
    "age key {s}",
    "AGE-SECRET-KEY-1" + tok("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
)
case("aws-access-key-id", "my key is {s} ok", "AKIA" + tok(B32, 16))
case("aws-secret-access-key", "aws_secret_access_key = {s}\n", tok(AN + "/+", 40))
case("google-api-key", "key={s}&q=1", "AIza" + tok(AN + "_-", 35))
case("google-oauth-client-secret", "secret {s}", "GOCSPX-" + tok(AN + "_-", 28))
case("google-oauth-access-token", "token ya29 {s}", "ya29." + tok(AN + "_-", 60))
case("azure-storage-account-key", "AccountName=x;AccountKey={s};", tok(AN + "+/", 86) + "==")
case("azure-ad-client-secret", "client secret: {s}\n", tok(AN, 3) + "8Q~" + tok(AN + "_~.-", 34))
case(
    "azure-sas-token",
    "https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig={s}",
    tok(AN + "%", 44),
)
case("alibaba-access-key-id", "id {s} here", "LTAI" + tok(AN, 20))
case("digitalocean-token", "do {s}", "dop_v1_" + tok(HEX, 64))
case("heroku-api-key", "heroku {s}", "HRKU-" + tok(AN + "_-", 60))
case("databricks-token", "token {s}", "dapi" + tok(HEX, 32))
case("hashicorp-vault-token", "VAULT_TOKEN {s}", "hvs." + tok(AN + "_-", 90))
case("terraform-cloud-token", "tf {s}", tok(AN, 14) + ".atlasv1." + tok(AN + "_-", 67))
case("planetscale-token", "ps {s}", "pscale_tkn_" + tok(AN + "_", 43))
case("github-token", "git push with {s}", "ghp_" + tok(AN, 36))
case("github-fine-grained-pat", "pat {s}", "github_pat_" + tok(AN + "_", 82))
case("gitlab-token", "gl {s}", "glpat-" + tok(AN + "_-", 20))
case("npm-token", "//registry.npmjs.org/:_authToken {s}", "npm_" + tok(AN, 36))
case("pypi-token", "pypi {s}", "pypi-AgEIcHlwaS5vcmc" + tok(AN + "_-", 70))
case("dockerhub-pat", "docker {s}", "dckr_pat_" + tok(AN + "_-", 27))
case("atlassian-api-token", "jira {s}", "ATATT3" + tok(AN + "_-", 186))
case("postman-api-key", "postman {s}", f"PMAK-{tok(HEX, 24)}-{tok(HEX, 34)}")
case("linear-api-key", "linear {s}", "lin_api_" + tok(AN, 40))
case("notion-token", "notion {s}", "ntn_" + tok(DI, 11) + tok(AN, 35))
case("onepassword-service-token", "op {s}", "ops_eyJ" + tok(AN + "_-", 300))
case("grafana-token", "grafana {s}", "glsa_" + tok(AN, 32) + "_" + tok(HEX, 8))
case("newrelic-user-key", "nr {s}", "NRAK-" + tok(UP + DI, 27))
case("sentry-auth-token", "sentry {s}", "sntrys_eyJ" + tok(AN + "_-", 80))
case("slack-token", "slack {s}", f"xoxb-{tok(DI, 12)}-{tok(DI, 13)}-{tok(AN, 24)}")
case(
    "slack-webhook",
    "post to https://hooks.slack.com/services/{s}",
    f"T{tok(UP, 8)}/B{tok(UP, 8)}/{tok(AN, 24)}",
)
case(
    "discord-webhook",
    f"https://discord.com/api/webhooks/{tok(DI, 18)}/{{s}}",
    tok(AN + "_-", 68),
)
case(
    "discord-bot-token",
    "discord bot {s}",
    "M" + tok(AN, 23) + "." + tok(AN, 6) + "." + tok(AN + "_-", 27),
)
case("telegram-bot-token", "bot {s}", tok(DI, 10) + ":AA" + tok(AN + "_-", 33))
case("twilio-api-key", "twilio {s}", "SK" + tok(HEX, 32))
case("sendgrid-api-key", "sg {s}", f"SG.{tok(AN + '_-', 22)}.{tok(AN + '_-', 43)}")
case("mailchimp-api-key", "mc {s}", tok(HEX, 32) + "-us14")
case("mailgun-api-key", "mg {s}", "key-" + tok(HEX, 32))
case("facebook-access-token", "fb {s}", "EAACEdEose0cBA" + tok(AN, 120))
case("stripe-secret-key", "stripe {s}", "sk_live_" + tok(AN, 24))
case("stripe-webhook-secret", "wh {s}", "whsec_" + tok(AN, 32))
case("square-token", "sq {s}", "sq0atp-" + tok(AN + "_-", 22))
case(
    "braintree-access-token", "bt {s}", f"access_token$production${tok(LO + DI, 16)}${tok(HEX, 32)}"
)
case("shopify-token", "shop {s}", "shpat_" + tok(HEX, 32))
case("bitbucket-token", "bb {s}", "ATBB" + tok(AN, 32))
case("postman-access-token", "pm {s}", "PMAT-" + tok(UP + DI, 26))
case("nuget-api-key", "nuget {s}", "oy2" + tok(LO + DI, 43))
case("clojars-token", "clojars {s}", "CLOJARS_" + tok(LO + DI, 60))
case("rubygems-api-key", "gem {s}", "rubygems_" + tok(HEX, 48))
case("doppler-token", "doppler {s}", "dp.pt." + tok(AN, 43))
case("dropbox-token", "dropbox {s}", "sl." + tok(AN + "_-", 140))
case("figma-token", "figma {s}", "figd_" + tok(AN + "_-", 40))
case("netlify-token", "netlify {s}", "nfp_" + tok(AN, 36))
case("supabase-token", "supabase {s}", "sbp_" + tok(HEX, 40))
case("posthog-key", "posthog {s}", "phx_" + tok(AN, 43))
case("sonarqube-token", "sonar {s}", "squ_" + tok(HEX, 40))
case("jfrog-token", "jfrog {s}", "AKCp" + tok(AN, 69))
case("brevo-api-key", "brevo {s}", f"xkeysib-{tok(HEX, 64)}-{tok(AN, 16)}")
case("salesforce-access-token", "sf {s}", "00D" + tok(AN, 15) + "!" + tok(AN + "._", 96))
case("defined-networking-key", "dn {s}", f"dnkey-{tok(UP + DI, 26)}-{tok(UP + DI, 52)}")
case("tavily-api-key", "tavily {s}", "tvly-" + tok(AN, 32))
case("together-api-key", "together {s}", "tgp_v1_" + tok(AN + "_-", 43))
case(
    "openai-api-key",
    "OPENAI {s}",
    "sk-proj-" + tok(AN, 40) + "T3BlbkFJ" + tok(AN, 40),
)
case("openai-project-key", "openai {s}", "sk-proj-" + tok(AN + "_-", 120))
case("openai-legacy-key", "legacy {s}", "sk-" + tok(AN, 48))
case("anthropic-api-key", "claude {s}", "sk-ant-api03-" + tok(AN + "_-", 93))
case("huggingface-token", "hf {s}", "hf_" + tok(UP + LO, 34))
case("groq-api-key", "groq {s}", "gsk_" + tok(AN, 52))
case("replicate-token", "replicate {s}", "r8_" + tok(AN, 37))
case("perplexity-api-key", "pplx {s}", "pplx-" + tok(AN, 48))
case("xai-api-key", "grok {s}", "xai-" + tok(AN, 80))
case("llm-vendor-key-assignment", "MISTRAL_API_KEY={s}\n", tok(AN, 32))
case("jwt", "cookie: session={s}; Path=/", JWT)
case("url-credentials", "DATABASE_URL=postgres://app:{s}@db.internal:5432/app", "v3ry-S3cret-pw")
case(
    "authorization-header",
    "Authorization: Basic {s}",
    base64.b64encode(b"admin:Tr0ub4dor&3").decode(),
)
case("bearer-token", "send it with bearer {s} please", tok(AN, 40))
case("password-assignment", 'db.connect(password="{s}")', "Tr0ub4dor&3")
case("password-xml-element", "<user><password>{s}</password></user>", "Tr0ub4dor&3")
case("password-cli-flag", "mysql -u root --password {s} db", "Tr0ub4dor3x")
case("curl-user-password", "curl -u admin:{s} https://api.internal", "Tr0ub4dor3x")
case("password-in-prose", "hi, my password is {s} thanks", "Summer2024!")
case("secret-assignment", 'CLIENT_SECRET = "{s}"', tok(AN, 32))
case("secret-cli-flag", "deploy --api-key {s}", tok(AN, 32))
case("secret-in-prose", "the api key is {s} for prod", tok(AN, 32))


def only(rule_id: str) -> SecretsDetector:
    others = [r.id for r in builtin_rules() if r.id != rule_id]
    return SecretsDetector(SecretsOptions(disabled_rules=others))


def test_every_shipped_rule_has_a_positive_example() -> None:
    assert {r.id for r in builtin_rules()} == set(POSITIVES)


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
def test_rule_finds_its_secret_alone(rule_id: str) -> None:
    text, secret = POSITIVES[rule_id]
    findings = only(rule_id).detect(text, ScanContext())
    start = text.index(secret)
    assert any(f.start <= start and f.end >= start + len(secret) for f in findings), findings
    assert all(f.detector == "secrets" and 0.5 <= f.score <= 1.0 for f in findings)


@pytest.mark.parametrize("rule_id", sorted(POSITIVES))
def test_full_detector_covers_every_example(rule_id: str) -> None:
    text, secret = POSITIVES[rule_id]
    findings = create("secrets").detect(text, ScanContext())
    start = text.index(secret)
    assert any(f.start < start + len(secret) and start < f.end for f in findings)


NEGATIVES = [
    # ordinary prose and code that merely talks about credentials
    "Reset your password: click the link we emailed you.",
    "my password is incorrect, can you help me reset it?",
    "The token limit is 4096; set max_tokens: 4096000 for long outputs.",
    "password = get_password()",
    "password = os.environ['DB_PASSWORD']",
    "api_key = settings.OPENAI_API_KEY",
    'token_type: "bearer"',
    "password_min_length = 12",
    "def check(password: str) -> bool:",
    "<input type='password' name='password'>",
    "the secret of a good risotto is patience",
    "primary_key = 'user_id_and_tenant'",
    "keyboard = 'qwertzuiopasdfghjkl'",
    "compass: north-north-west",
    # placeholders and documentation values
    "AWS_SECRET_ACCESS_KEY=<your-secret-key>",
    "api_key: ${OPENAI_API_KEY}",
    'password: "{{ vault_db_password }}"',
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "postgres://user:password@localhost:5432/db",
    "postgres://user:${DB_PASS}@localhost:5432/db",
    "password = 'changeme'",
    "secret = 'your_secret_here'",
    # shapes that resemble tokens but are not
    "commit 3f5e9a1b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "AKIA is the prefix AWS uses for long-term key ids",
    "sk-short",
    "eyJhbGciOi is how a JWT header starts",
    "https://example.com/path?query=value#frag",
    "Contact me at jane@example.com or +1 555 0100.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_near_misses_are_not_secrets(text: str) -> None:
    assert create("secrets").detect(text, ScanContext()) == []


def test_spans_are_character_offsets_in_non_ascii_text() -> None:
    secret = "ghp_" + tok(AN, 36)
    text = f"Schlüssel für das Repo: {secret} — danke 🙏"
    (finding,) = create("secrets").detect(text, ScanContext())
    assert text[finding.start : finding.end] == secret
    assert finding.kind == "GITHUB_TOKEN"


def test_assignment_span_covers_only_the_value() -> None:
    text = 'password = "Tr0ub4dor&3"'
    (finding,) = create("secrets").detect(text, ScanContext())
    assert text[finding.start : finding.end] == "Tr0ub4dor&3"
    assert finding.kind == "PASSWORD"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # A base64 value ends in "=": read as a type annotation plus an
        # assignment, it made the next line's key the "password".
        ("password: U3VwM3JTM2NyZXRQYXNzdzByZCE=\n  user: admin\n", "U3VwM3JTM2NyZXRQYXNzdzByZCE="),
        ("api_secret: c2VjcmV0LXZhbHVlLTEyMzQ1Njc4OQ==\nregion: eu-west-1\n", None),
    ],
)
def test_an_assignment_never_takes_its_value_from_the_next_line(
    text: str, value: str | None
) -> None:
    found = create("secrets").detect(text, ScanContext())
    values = [text[f.start : f.end] for f in found]
    assert all("\n" not in v and not v.endswith(":") for v in values)
    if value is not None:
        assert values == [value]


def test_overlapping_rules_keep_the_most_specific_finding() -> None:
    token = "sk-proj-" + tok(AN, 40) + "T3BlbkFJ" + tok(AN, 40)
    findings = create("secrets").detect(f'api_key = "{token}"', ScanContext())
    assert [f.kind for f in findings] == ["OPENAI_API_KEY"]


def test_findings_never_carry_the_secret() -> None:
    text, secret = POSITIVES["stripe-secret-key"]
    for finding in create("secrets").detect(text, ScanContext()):
        assert secret not in repr(finding)
        assert secret not in json.dumps(finding.to_dict())


def test_pem_without_end_marker_still_covers_the_body() -> None:
    body = tok(AN, 64)
    text = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n"
    (finding,) = create("secrets").detect(text, ScanContext())
    assert finding.kind == "PRIVATE_KEY"
    assert finding.end >= text.index(body) + len(body)


def test_disabled_kinds_and_extra_rules() -> None:
    text = "AKIA" + tok(B32, 16) + " and ACME-" + tok(DI, 12)
    detector = create(
        "secrets",
        {
            "disabled_kinds": ["AWS_ACCESS_KEY_ID"],
            "extra_rules": [
                {"id": "acme", "kind": "ACME_TOKEN", "pattern": r"\bACME-[0-9]{12}\b", "score": 0.9}
            ],
        },
    )
    assert [f.kind for f in detector.detect(text, ScanContext())] == ["ACME_TOKEN"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"disabled_rules": ["no-such-rule"]}, "unknown rule"),
        ({"extra_rules": [{"id": "x", "kind": "X", "pattern": "(unclosed"}]}, "RE2"),
        ({"extra_rules": [{"id": "x", "kind": "X", "pattern": r"(a)\1"}]}, "RE2"),
        ({"extra_rules": [{"id": "x", "kind": "lower", "pattern": "a"}]}, "kind"),
        (
            {"extra_rules": [{"id": "x", "kind": "X", "pattern": "a", "validators": ["nope"]}]},
            "validator",
        ),
        ({"extra_rules": [{"id": "pem-private-key", "kind": "X", "pattern": "a"}]}, "duplicate"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create("secrets", options)


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


@pytest.mark.slow
def test_one_megabyte_adversarial_inputs_stay_linear() -> None:
    # A guard against catastrophic backtracking (which would take minutes),
    # not a benchmark: bench/secrets_vs_detect_secrets.py prints the timings.
    detector = create("secrets")
    size = 1_000_000
    inputs = [
        "password=" * (size // 9),
        " ".join(f"api_key={tok(AN, 20)}" for _ in range(size // 29)),
        "-----BEGIN RSA PRIVATE KEY-----" + "A" * size,
        "a://b:" * (size // 6),
        "é password: ü " * (size // 14),
    ]
    for text in inputs:
        started = time.perf_counter()
        detector.detect(text, ScanContext())
        assert time.perf_counter() - started < 5.0


def test_two_secrets_one_boundary_character_apart_are_both_found() -> None:
    # The rule's boundary character after the first secret is also the one
    # before the second: both must be reported.
    first, second = (tok(AN, 3) + "8Q~" + tok(AN + "_~", 34) for _ in range(2))
    text = f"client secrets: {first},{second}"
    spans = {
        text[f.start : f.end] for f in only("azure-ad-client-secret").detect(text, ScanContext())
    }
    assert spans == {first, second}
