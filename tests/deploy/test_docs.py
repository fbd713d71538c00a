"""docs/architecture.md, operations.md, security.md: the sections the issue asks for,
working links, and statements that match the files they describe; every module and source
path the deploy files name, and every ECOGRID_* setting the docs and deploy files name,
exists in the code."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from api.settings import REMOVED
from tests.deploy.tools import DEPLOY, ROOT, load_yaml, settings_env_names

DOCS = ROOT / "docs"
OUR_PACKAGES = ("api", "adapters", "twin", "optimizer", "scenarios", "benchmarks")
# `api.live.runtime.Runtime`, `adapters.history` (a module, then attributes)
_OURS = "|".join(OUR_PACKAGES)
DOTTED = re.compile(rf"(?<![\w./$-])((?:{_OURS})(?:\.[A-Za-z_]\w*)+)(?![\w/-])")
# `api/live/fleet.py`, `adapters/history/`, `tests/api/live/test_roles.py`
SOURCE_PATH = re.compile(rf"(?<![\w./$-])((?:tests/)?(?:{_OURS})/[\w./-]*\w)")
FILE_SUFFIX = re.compile(r"\.(md|py|ya?ml|json|zarr|toml|txt|csv|html|npz)$")


def _deploy_files() -> list[Path]:
    return [ROOT / "Dockerfile", ROOT / "docker-compose.yml",
            *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]


def _named_files() -> list[Path]:
    """The docs and the deploy files (what an operator reads)."""
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md", *_deploy_files()]


def _references(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` that names code: a Markdown file's inline code spans and relative
    links outside fenced blocks (fenced blocks hold diagrams and examples), every line of
    the other files."""
    lines = path.read_text().splitlines()
    if path.suffix != ".md":
        return list(enumerate(lines, 1))
    out, fenced = [], False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out += [(n, s) for s in re.findall(r"`([^`]+)`", line)]
            out += [(n, s) for s in re.findall(r"\]\(\.\./([^)#]+)", line)]
    return out


def _resolves(dotted: str) -> bool:
    """True when ``dotted`` is a module of ours, or an attribute path inside one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def headings(path) -> set[str]:
    """GitHub anchor slugs of a Markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_operations_covers_deploy_scale_backup_upgrade_and_secrets():
    h = headings(DOCS / "operations.md")
    for slug in ("deploy", "docker-compose-one-host", "kubernetes", "scale",
                 "back-up-and-restore", "upgrade-with-migrations", "rotate-secrets",
                 "monitor", "logs", "benchmarks"):
        assert slug in h, slug
    text = (DOCS / "operations.md").read_text()
    assert "Alembic" in text and "pg_dump" in text and "ECOGRID_JWT_SECRET" in text


def test_security_covers_auth_acls_tls_and_logging():
    h = headings(DOCS / "security.md")
    for slug in ("auth-model-api-and-websocket", "mqtt-users-and-acls", "tls", "what-is-logged"):
        assert slug in h, slug


def test_architecture_links_the_other_pages():
    text = (DOCS / "architecture.md").read_text()
    for page in ("protocol.md", "api.md", "mqtt-scaling.md", "operations.md", "security.md"):
        assert f"({page}" in text, page


def test_relative_links_resolve():
    for name in ("architecture.md", "operations.md", "security.md"):
        text = (DOCS / name).read_text()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (DOCS / target).exists(), f"{name}: broken link {target}"
        for page, anchor in re.findall(r"\]\(([\w.-]+\.md)#([\w-]+)\)", text):
            assert anchor in headings(DOCS / page), f"{name}: no #{anchor} in {page}"


def test_every_alert_runbook_points_at_an_existing_section():
    slugs = headings(DOCS / "operations.md")
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                runbook = rule.get("annotations", {}).get("runbook")
                if runbook:
                    page, _, anchor = runbook.partition("#")
                    assert page == "docs/operations.md" and anchor in slugs, runbook


def test_the_acl_table_matches_the_credentials_code():
    from adapters.credentials import gateway_acl, service_acl

    text = (DOCS / "security.md").read_text()
    for line in gateway_acl("{site}")[1:]:
        topic = line.split()[-1]
        short = topic.removesuffix("/+")
        assert short in text, f"security.md does not mention the gateway topic {topic}"
    for line in service_acl()[1:]:
        if line.split()[1] in ("write", "readwrite"):
            assert line.split()[-1] in text


def test_the_stated_benchmark_margin_is_the_workflow_s():
    env = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")["env"]
    text = (DOCS / "operations.md").read_text()
    assert f'BENCHMARK_MARGIN: "{env["BENCHMARK_MARGIN"]}"' in text
    assert env["BENCHMARK_BASELINE"] in text
    pct = env["BENCHMARK_MARGIN"].split(":")[1]
    assert f"**{pct.replace('%', ' %')} slower**" in text


def test_every_module_and_source_path_a_deploy_file_names_exists():
    # A module, class or file that moved leaves its old name behind. (The docs' backticked
    # names: test_doc_references.py; here the deploy files, down to the attribute.)
    missing = []
    for path in _deploy_files():
        for n, text in _references(path):
            where = f"{path.relative_to(ROOT)}:{n}"
            for m in DOTTED.finditer(text):
                if not FILE_SUFFIX.search(m.group(1)) and not _resolves(m.group(1)):
                    missing.append(f"{where}: {m.group(1)}")
            for m in SOURCE_PATH.finditer(text):
                src = m.group(1)
                if not ((ROOT / src).exists() or (ROOT / "tests" / src).exists()):
                    missing.append(f"{where}: {src}")
    assert not missing, "named but not in the code: " + "; ".join(missing)


def test_every_ecogrid_variable_named_is_a_setting():
    known = settings_env_names()
    # docker-compose's own variables (${ECOGRID_IMAGE}, ...) are not settings of the code
    compose = set(re.findall(r"\$\{(ECOGRID_\w+)", (ROOT / "docker-compose.yml").read_text()))
    compose |= {ln.split("=", 1)[0] for ln in (DEPLOY / "env.example").read_text().splitlines()
                if ln.startswith("ECOGRID_")}
    allowed = known | (compose - known) | set(REMOVED)  # a removed one, named as removed
    unknown = []
    for path in _named_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for name in re.findall(r"ECOGRID_\w+", line):
                prefix = name.endswith("_")  # ECOGRID_SMTP_* : some settings
                if (prefix and not any(k.startswith(name) for k in known)) or \
                        (not prefix and name not in allowed):
                    unknown.append(f"{path.relative_to(ROOT)}:{n}: {name}")
    assert not unknown, "not settings of api/settings.py: " + "; ".join(unknown)
