"""docs/architecture.md, operations.md, security.md: the sections the issue asks for,
working links, and statements that match the files they describe."""

from __future__ import annotations

import re

from tests.deploy.tools import DEPLOY, ROOT, load_yaml

DOCS = ROOT / "docs"


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
