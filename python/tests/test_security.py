"""TLS and bearer tokens against a coordinator that requires both: the CA verifies the
server, tokens come from a file or the environment as mixctl reads them, roles are
enforced, and a worker-role token runs external trials."""

import os
import subprocess
import threading
from unittest import mock

from harness import CoordinatorTest, losses, small_spec

import mixopt

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
WORKER = "worker-token-0123456789abcdef"


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl, P-256)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mixopt test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


class SecurityTest(CoordinatorTest):
    def coordinator_args_for_test(self):
        certs = os.path.join(self.tmp, "certs")
        os.mkdir(certs)
        self.ca, cert, key = make_certs(certs)
        tokens = os.path.join(self.tmp, "tokens")
        with open(tokens, "w") as f:
            f.write(f"admin {ADMIN} test-admin\nviewer {VIEWER} test-viewer\nworker {WORKER} test-worker\n")
        os.chmod(tokens, 0o600)
        self.files = {}
        for role, tok in (("admin", ADMIN), ("worker", WORKER)):
            self.files[role] = os.path.join(self.tmp, role + ".token")
            with open(self.files[role], "w") as f:
                f.write(tok + "\n")
        return ["-tls-cert", cert, "-tls-key", key, "-tokens", tokens]

    def client(self, **kw):
        c = mixopt.Client(self.coord.addr, tls_ca=self.ca, timeout=10, **kw)
        self.addCleanup(c.close)
        return c

    def test_tls_and_tokens(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            admin = self.client(token_file=self.files["admin"])
            study = admin.create_study(small_spec(max_trials=1, max_parallel=1))
            self.assertEqual([s.id for s in admin.studies()], [study.id])

            with self.assertRaises(mixopt.UnauthenticatedError):
                self.client().studies()

            # No CA: the client does not speak TLS to a TLS server.
            with self.assertRaises(mixopt.UnavailableError):
                mixopt.Client(self.coord.addr, token_file=self.files["admin"], timeout=2).study(study.id)

        with mock.patch.dict(os.environ, {"MIXOPT_TOKEN": VIEWER}, clear=True):
            viewer = self.client()
            self.assertEqual(viewer.study(study.id).name, "pyclient-test")
            with self.assertRaises(mixopt.PermissionDeniedError):
                viewer.create_study(small_spec())
        with mock.patch.dict(os.environ, {"MIXOPT_TOKEN": "not-a-valid-token-at-all", "MIXOPT_TOKEN_FILE":
                                          self.files["admin"], "MIXOPT_ADDR": self.coord.addr,
                                          "MIXOPT_TLS_CA": self.ca}, clear=True):
            env_client = mixopt.Client()  # address, CA and token all from the environment
            self.addCleanup(env_client.close)
            self.assertEqual(env_client.study(study.id).id, study.id)

        with mock.patch.dict(os.environ, {}, clear=True):
            worker = self.client(token_file=self.files["worker"])
            with self.assertRaises(mixopt.PermissionDeniedError):
                worker.studies()
            done = []

            def work():
                # A worker token cannot read the study, so the loop ends on idle_timeout.
                for trial in worker.work(study.id, worker_name="tls-worker", poll_wait=0.3, idle_timeout=1.5):
                    with trial:
                        for step in range(1, trial.steps + 1):
                            trial.report(step, losses(trial.mixture, trial.scale, step))
                    done.append(trial.id)

            th = threading.Thread(target=work, daemon=True)
            th.start()
            final = admin.wait(study.id, timeout=60, interval=0.2, progress=False)
            th.join(30)
            self.assertFalse(th.is_alive())
            self.assertEqual(final.state, "completed")
            self.assertEqual(len(done), 1)
            self.assertEqual(admin.trial(done[0]).state, "succeeded")
            # Registered under its name (its identity is checked in test_worker_protocol).
            self.assertEqual([w.hostname for w in admin.workers()], ["tls-worker"])
