"""The live stack's gRPC hop secured as in production (docs/security.md): TLS with a throwaway CA
and a server certificate for 127.0.0.1 and localhost (made with the openssl CLI, which
infra/local/install-deps.sh installs), bearer tokens by their SHA-256 hashes, and
`auth.required` with the callers the traffic uses. The service then exports its TLS and
authentication metrics, which the rules and the dashboard use."""

import hashlib
import secrets
import ssl
import subprocess

import grpc

# Caller identities (auth.callers) and what each may call.
CALLER = "obs-check"            # every RPC, the default tenant: all the ordinary traffic
READER = "obs-reader"           # Get only: a Put of it is PERMISSION_DENIED (method_not_allowed)
STRANGER = "obs-stranger"       # a valid token whose identity is no caller (unknown_identity)

# The service re-reads the certificate this often (default 5 s), so the check sees a reload soon.
RELOAD_INTERVAL = "200ms"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA and server certificates it issues, in `directory`."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = directory / "ca.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                 "-subj", "/CN=valkey-sessions observability check CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)

    def server(self, name, days):
        """Issues a certificate for 127.0.0.1 and localhost valid for `days`; returns the paths
        of the certificate and the key."""
        (self.dir / f"{name}.ext").write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", str(secrets.randbits(63)), "-days", str(days),
                 "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=self.dir)
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


def not_after(cert):
    """A PEM certificate's not_after in unix seconds."""
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-enddate"], check=True,
                         capture_output=True, text=True).stdout
    return ssl.cert_time_to_seconds(out.strip().removeprefix("notAfter="))


class Secured:
    """The files and the environment of a service with TLS and required bearer tokens, and the
    credentials of the callers."""

    def __init__(self, directory):
        self.dir = directory
        self.pki = Pki(directory)
        self.cert, self.key = self.pki.server("server", days=1)
        self.tokens = {identity: secrets.token_urlsafe(32) for identity in (CALLER, READER, STRANGER)}
        self.tokens_file = directory / "tokens.toml"
        self.tokens_file.write_text("".join(
            f'[[token]]\nidentity = "{identity}"\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            for identity, token in self.tokens.items()))
        self.config_file = directory / "config.toml"
        self.config_file.write_text(
            "[auth]\nrequired = true\n\n"
            f'[[auth.callers]]\nidentity = "{CALLER}"\n\n'
            f'[[auth.callers]]\nidentity = "{READER}"\nmethods = ["Get"]\n')

    def env(self):
        return {
            "VALKEY_SESSIONS_CONFIG": str(self.config_file),
            "GRPC_TLS_CERT_FILE": str(self.cert),
            "GRPC_TLS_KEY_FILE": str(self.key),
            "GRPC_AUTH_TOKENS_FILE": str(self.tokens_file),
            "VALKEY_SESSIONS_GRPC__TLS__RELOAD_INTERVAL": RELOAD_INTERVAL,
        }

    def channel(self, addr, identity=CALLER, token=None):
        """A TLS channel trusting the CA that sends `identity`'s bearer token (`token` instead if
        given; no token with identity=None)."""
        credentials = grpc.ssl_channel_credentials(root_certificates=self.pki.ca.read_bytes())
        token = token or (self.tokens[identity] if identity else None)
        if token is not None:
            # Sends `authorization: Bearer <token>`.
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token))
        return grpc.secure_channel(addr, credentials)

    def rotate(self, days):
        """Replaces the served certificate and key with a new pair valid for `days` (the key
        first, then the certificate, each by rename as a secret volume swaps them); returns the
        new certificate's not_after."""
        cert, key = self.pki.server(f"server-{days}d", days=days)
        key.replace(self.key)
        cert.replace(self.cert)
        return not_after(self.cert)
