"""TLS, mutual TLS and bearer-token auth accept the right credentials and refuse the wrong."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sim2real.serve.client import PolicyCallError, PolicyClient
from sim2real.serve.config import ServeConfig
from sim2real.serve.synthetic import OBS_DIM, write_policy
from sim2real.serve.testing import BackgroundServer


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_ca(tmp: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key, _write(tmp / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))


def make_leaf(tmp: Path, name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write(tmp / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
        _write(tmp / f"{name}.key", _pem_key(key)),
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca, ca_key, ca_pem = make_ca(tmp_path, "robot-ca")
    other, other_key, other_pem = make_ca(tmp_path, "other-ca")
    server_crt, server_key = make_leaf(tmp_path, "server", ca, ca_key)
    client_crt, client_key = make_leaf(tmp_path, "client", ca, ca_key)
    rogue_crt, rogue_key = make_leaf(tmp_path, "rogue", other, other_key)
    write_policy(tmp_path / "policy.onnx")
    return {
        "ca": ca_pem, "other_ca": other_pem, "server_crt": server_crt, "server_key": server_key,
        "client_crt": client_crt, "client_key": client_key, "rogue_crt": rogue_crt, "rogue_key": rogue_key,
        "model": tmp_path / "policy.onnx",
    }


def _act(client: PolicyClient) -> None:
    client.act(np.zeros(OBS_DIM), timeout_s=5)


def test_tls_accepts_the_right_ca_and_refuses_plaintext_and_wrong_ca(pki) -> None:
    config = ServeConfig(model=pki["model"], port=0, device="cpu", tls_cert=pki["server_crt"], tls_key=pki["server_key"])
    with BackgroundServer(config) as srv:
        with PolicyClient(srv.target, tls_ca=pki["ca"]) as client:
            _act(client)
        for kwargs in ({}, {"tls_ca": pki["other_ca"]}):
            with PolicyClient(srv.target, **kwargs) as client, pytest.raises(PolicyCallError) as err:
                _act(client)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate_from_the_ca(pki) -> None:
    config = ServeConfig(
        model=pki["model"], port=0, device="cpu", tls_cert=pki["server_crt"], tls_key=pki["server_key"],
        tls_client_ca=pki["ca"],
    )
    with BackgroundServer(config) as srv:
        with PolicyClient(srv.target, tls_ca=pki["ca"], tls_cert=pki["client_crt"], tls_key=pki["client_key"]) as client:
            _act(client)
        for kwargs in ({"tls_ca": pki["ca"]}, {"tls_ca": pki["ca"], "tls_cert": pki["rogue_crt"], "tls_key": pki["rogue_key"]}):
            with PolicyClient(srv.target, **kwargs) as client, pytest.raises(PolicyCallError) as err:
                _act(client)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_unix_socket_beside_mutual_tls_is_plaintext_and_keeps_the_token(pki) -> None:
    """The documented choice (docs/security.md): TLS applies to TCP; the socket is
    plaintext, admitted by its file mode, and a configured token is still required."""
    with tempfile.TemporaryDirectory(prefix="s2r-tls-", dir="/tmp") as folder:  # short: sun_path
        token_file = Path(folder) / "token"
        token_file.write_text("s3cret-token\n")
        config = ServeConfig(
            model=pki["model"], port=0, device="cpu", tls_cert=pki["server_crt"], tls_key=pki["server_key"],
            tls_client_ca=pki["ca"], token_file=token_file, uds=Path(folder) / "p.sock",
        )
        with BackgroundServer(config) as srv:
            assert "plaintext (TLS applies to TCP only)" in srv.server.describe()
            with PolicyClient(srv.uds_target, token="s3cret-token") as client:
                _act(client)
            with PolicyClient(srv.uds_target) as client, pytest.raises(PolicyCallError) as err:
                _act(client)
            assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
            # TCP still demands a client certificate.
            with PolicyClient(srv.target, token="s3cret-token", tls_ca=pki["ca"]) as client, \
                    pytest.raises(PolicyCallError) as err:
                _act(client)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_bearer_token(pki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    config = ServeConfig(model=pki["model"], port=0, device="cpu", token_file=token_file)
    with BackgroundServer(config) as srv:
        with PolicyClient(srv.target, token="s3cret-token") as client:
            _act(client)
            assert client.list_models().default_model == "policy"
            assert client.reload().models[0].serving_version == 1
            with client.session(deadline_s=1.0) as loop:
                assert not loop.step(np.zeros(OBS_DIM)).fallback
        for token in (None, "wrong", "s3cret-token-but-longer"):
            with PolicyClient(srv.target, token=token) as client:
                with pytest.raises(PolicyCallError) as err:
                    _act(client)
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(PolicyCallError) as err:
                    client.reload()
                assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
                with client.session(deadline_s=0.2, default_action=np.zeros(3)) as loop:
                    result = loop.step(np.zeros(OBS_DIM))
                    assert result.fallback and "UNAUTHENTICATED" in loop.last_error
        # Health stays open for orchestrators.
        channel = grpc.insecure_channel(srv.target)
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        channel.close()


def test_admin_calls_are_refused_without_a_server_token(pki) -> None:
    with BackgroundServer(ServeConfig(model=pki["model"], port=0, device="cpu")) as srv:
        with PolicyClient(srv.target, token="anything") as client:
            _act(client)  # the policy service is open when no token is configured
            with pytest.raises(PolicyCallError) as err:
                client.reload()
            assert err.value.code == grpc.StatusCode.PERMISSION_DENIED and "--token-file" in err.value.message


def test_config_errors_name_the_flag(tmp_path: Path) -> None:
    for kwargs, text in (
        ({}, "exactly one of --model"),
        ({"model": tmp_path / "p.onnx", "tls_cert": tmp_path / "c"}, "--tls-cert and --tls-key"),
        ({"model": tmp_path / "p.onnx", "max_action_delta": 3.0}, "max_action_delta"),
        ({"model": tmp_path / "p.onnx", "port": 70000}, "port"),
    ):
        with pytest.raises(ValueError, match=text):
            ServeConfig(**kwargs)


def test_a_key_that_does_not_match_its_certificate_is_named(pki, tmp_path: Path) -> None:
    """Not "is the port in use?" (issue 12, item 7): the pair is checked before binding."""
    other_crt, other_key = make_leaf(tmp_path, "other", *make_ca(tmp_path, "third-ca")[:2])
    encrypted = _write(tmp_path / "encrypted.key", _key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"),
    ))
    junk = _write(tmp_path / "junk.pem", b"not a certificate\n")
    for cert, key, ca, text in (
        (pki["server_crt"], other_key, None, f"--tls-key {other_key} does not match the certificate in --tls-cert"),
        (pki["server_crt"], encrypted, None, "the key is encrypted"),
        (junk, pki["server_key"], None, f"--tls-cert {junk}: no PEM certificate"),
        (pki["server_crt"], junk, None, f"--tls-key {junk}: not a PEM private key"),
        (pki["server_crt"], pki["server_key"], junk, f"--tls-client-ca {junk}: no PEM certificate"),
    ):
        config = ServeConfig(model=pki["model"], port=0, device="cpu", tls_cert=cert, tls_key=key, tls_client_ca=ca)
        with pytest.raises(ValueError) as err:
            BackgroundServer(config).start()
        assert text in str(err.value) and "port" not in str(err.value), err.value
    # The matching pair still serves.
    config = ServeConfig(model=pki["model"], port=0, device="cpu", tls_cert=other_crt, tls_key=other_key)
    with BackgroundServer(config) as srv:
        assert srv.port > 0


def test_the_cli_reports_a_mismatched_key_in_one_line(pki, tmp_path: Path) -> None:
    _, other_key = make_leaf(tmp_path, "other", *make_ca(tmp_path, "third-ca")[:2])
    result = subprocess.run(
        [sys.executable, "-m", "sim2real.cli", "serve", "--port", "0", "--device", "cpu",
         "--model", str(pki["model"]), "--tls-cert", str(pki["server_crt"]), "--tls-key", str(other_key)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "does not match the certificate" in result.stderr and "Traceback" not in result.stderr
