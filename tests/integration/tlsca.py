"""A throw-away PKI for the TLS tests, made with the openssl command at test
time: a root CA, an intermediate CA, and leaf certificates the intermediate
signs (the server serves leaf + intermediate: a chain)."""
import os
import subprocess


def _ossl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(name, cwd):
    _ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name, cwd=cwd)


def make_ca(d):
    """Root and intermediate in directory d; returns the root's path."""
    os.makedirs(d, exist_ok=True)
    _key("root.key", d)
    _ossl("req", "-x509", "-new", "-key", "root.key", "-out", "root.pem", "-days", "2",
          "-subj", "/CN=Parley Test Root", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _key("inter.key", d)
    _ossl("req", "-new", "-key", "inter.key", "-out", "inter.csr", "-subj", "/CN=Parley Test Intermediate", cwd=d)
    with open(os.path.join(d, "inter.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")
    _ossl("x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
          "-out", "inter.pem", "-days", "2", "-extfile", "inter.ext", cwd=d)
    return os.path.join(d, "root.pem")


def make_leaf(d, name, cn="localhost", sans="DNS:localhost,IP:127.0.0.1"):
    """A server certificate for cn; returns (chain path, key path)."""
    _key(f"{name}.key", d)
    _ossl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "inter.pem", "-CAkey", "inter.key", "-CAcreateserial",
          "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    chain = os.path.join(d, f"{name}.chain.pem")
    with open(chain, "w") as out:
        for part in (f"{name}.pem", "inter.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return chain, os.path.join(d, f"{name}.key")
