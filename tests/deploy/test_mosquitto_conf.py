"""deploy/mosquitto/mosquitto.conf with the files of `ecogrid mqtt credentials`, on a
real Mosquitto: no anonymous clients, each gateway confined to its site by the ACL."""

from __future__ import annotations

import getpass
import queue
import socket
import subprocess
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from adapters.broker import BrokerError, find_mosquitto, free_port
from adapters.credentials import gateway_user, write_credentials
from tests.deploy.tools import DEPLOY

CONF = DEPLOY / "mosquitto" / "mosquitto.conf"


def local_config(text: str, port: int, creds: str, data: str) -> str:
    """The deploy config with the container paths and the listener moved to ``tmp``."""
    out = [f"user {getpass.getuser()}"]
    for line in text.splitlines():
        if line.startswith("listener 1883"):
            line = f"listener {port} 127.0.0.1"
        line = line.replace("/mosquitto/credentials", creds).replace("/mosquitto/data", data)
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[dict]:
    try:
        binary = find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("deploy-mosquitto")
    creds = write_credentials(["S1", "S2"], tmp / "credentials", service_password="svc-pw")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(local_config(CONF.read_text(), port, str(tmp / "credentials"), str(tmp)))
    log = open(tmp / "mosquitto.log", "wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                raise AssertionError("mosquitto did not start with the deploy config:\n"
                                     + (tmp / "mosquitto.log").read_text()) from None
            time.sleep(0.05)
    yield {"port": port, "passwords": creds.passwords}
    proc.terminate()
    proc.wait(10)
    log.close()


def client(broker: dict, user: str | None, password: str | None = None) -> tuple:
    """A connected paho client and the CONNACK reason; messages go to its queue."""
    inbox: queue.Queue = queue.Queue()
    acked: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic()}",
                    protocol=mqtt.MQTTv311)
    if user is not None:
        c.username_pw_set(user, password)
    c.on_connect = lambda cl, ud, flags, reason, props: acked.put(reason)
    c.on_message = lambda cl, ud, msg: inbox.put((msg.topic, msg.payload))
    c.on_subscribe = lambda cl, ud, mid, codes, props: acked.put(codes)
    c.connect("127.0.0.1", broker["port"])
    c.loop_start()
    reason = acked.get(timeout=5)
    return c, reason, inbox, acked


def stop(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_anonymous_and_wrong_passwords_are_refused(broker):
    c, reason, _, _ = client(broker, None)
    stop(c)
    assert reason.is_failure
    c, reason, _, _ = client(broker, "ecogrid", "not-the-password")
    stop(c)
    assert reason.is_failure


def test_gateways_are_confined_to_their_site(broker):
    pw = broker["passwords"]
    svc, reason, inbox, acks = client(broker, "ecogrid", pw["ecogrid"])
    assert not reason.is_failure
    svc.subscribe("sites/+/telemetry", qos=1)
    acks.get(timeout=5)
    gw, reason, gw_inbox, gw_acks = client(broker, gateway_user("S1"), pw[gateway_user("S1")])
    assert not reason.is_failure
    try:
        gw.publish("sites/S2/telemetry", b'{"forged": true}', qos=1).wait_for_publish(5)
        gw.publish("sites/S1/telemetry", b'{"p_kw": 1.0}', qos=1).wait_for_publish(5)
        topic, payload = inbox.get(timeout=5)
        assert (topic, payload) == ("sites/S1/telemetry", b'{"p_kw": 1.0}')
        # The forged message for S2 was dropped by the ACL (it would have come first).
        with pytest.raises(queue.Empty):
            inbox.get(timeout=0.3)
        # The service writes setpoints; a gateway reads only its own site's.
        gw.subscribe("sites/+/devices/+/commands/setpoint", qos=1)
        gw_acks.get(timeout=5)
        for site in ("S2", "S1"):
            svc.publish(f"sites/{site}/devices/d1/commands/setpoint", site.encode(),
                        qos=1).wait_for_publish(5)
        assert gw_inbox.get(timeout=5) == ("sites/S1/devices/d1/commands/setpoint", b"S1")
        with pytest.raises(queue.Empty):
            gw_inbox.get(timeout=0.3)
    finally:
        stop(gw)
        stop(svc)
