"""Parts of the client that need no coordinator: token and address resolution, spec
loading with the field named, error mapping."""

import contextlib
import io
import json
import os
import tempfile
import unittest
from unittest import mock

import grpc

import harness  # noqa: F401  (puts the package on sys.path)
import mixopt
from mixopt import _connection, errors
from mixopt import client as client_module
from mixopt.spec import load_spec


class TokenTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.file = os.path.join(self.dir, "tok")
        with open(self.file, "w") as f:
            f.write("  from-file-token-0123456789  \nsecond line ignored\n")
        self.env_file = os.path.join(self.dir, "envtok")
        with open(self.env_file, "w") as f:
            f.write("from-env-file-token-0123456789\n")

    def test_order_is_mixctls(self):
        env = {"MIXOPT_TOKEN_FILE": self.env_file, "MIXOPT_TOKEN": "from-env-variable"}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(_connection.read_token(self.file), "from-file-token-0123456789")
            self.assertEqual(_connection.read_token(None), "from-env-file-token-0123456789")
        with mock.patch.dict(os.environ, {"MIXOPT_TOKEN": " from-env-variable "}, clear=True):
            self.assertEqual(_connection.read_token(None), "from-env-variable")
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(_connection.read_token(None), "")

    def test_home_is_expanded(self):
        with mock.patch.dict(os.environ, {"HOME": self.dir}, clear=True):
            self.assertEqual(_connection.read_token("~/tok"), "from-file-token-0123456789")

    def test_empty_or_missing_file_names_the_field(self):
        empty = os.path.join(self.dir, "empty")
        open(empty, "w").close()
        for path in (empty, os.path.join(self.dir, "absent")):
            with self.assertRaises(mixopt.InvalidArgumentError) as cm:
                _connection.read_token(path)
            self.assertEqual(cm.exception.field, "token_file")

    def test_address_from_environment(self):
        with mock.patch.dict(os.environ, {"MIXOPT_ADDR": "10.0.0.1:9"}, clear=True):
            self.assertEqual(_connection.resolve_addr(None), "10.0.0.1:9")
            self.assertEqual(_connection.resolve_addr("h:1"), "h:1")
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(_connection.resolve_addr(None), "127.0.0.1:7070")

    def test_loopback(self):
        for addr, want in [("127.0.0.1:7070", True), ("localhost:1", True), ("[::1]:7070", True),
                           ("10.1.2.3:7070", False), ("coord.example.org:7070", False), ("nocolon", False)]:
            self.assertEqual(_connection.is_loopback(addr), want, addr)

    def test_token_never_in_clear_to_a_remote_address(self):
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(mixopt.InvalidArgumentError) as cm:
                mixopt.Client("10.1.2.3:7070", token_file=self.file)
            self.assertEqual(cm.exception.field, "addr")


class SpecTest(unittest.TestCase):
    def test_example_yaml_loads(self):
        spec = load_spec(os.path.join(harness.REPO, "examples", "demo-study.yaml"))
        self.assertEqual([d.name for d in spec.domains], ["wikipedia", "stackexchange", "github", "arxiv", "book"])
        self.assertEqual(spec.target.scale, "1B")
        self.assertEqual(spec.domains[4].max_weight, 0.6)

    def test_camel_and_snake_case(self):
        a = load_spec({"budget_flops": 5, "maxParallel": 2})
        self.assertEqual((a.budget_flops, a.max_parallel), (5, 2))
        b = load_spec({"budget_flops": "2e7", "steps": ["100", 200.0]})
        self.assertEqual((b.budget_flops, list(b.steps)), (2e7, [100, 200]))

    def test_unknown_and_mistyped_fields_are_named(self):
        cases = [
            ({"scales": [{"name": "a", "parms": 1}]}, "scales[0].parms"),
            ({"budget": 1}, "budget"),
            ({"domains": {"name": "x"}}, "domains"),
            ({"steps": [10, "many"]}, "steps[1]"),
            ({"steps": ["1e3"]}, "steps[0]"),  # PyYAML reads 1e3 as a string
            ({"max_trials": 2.5}, "max_trials"),
            ({"target": {"scale": 3}}, "target.scale"),
            ({"objective": "loss"}, "objective"),
        ]
        for spec, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(mixopt.InvalidArgumentError) as cm:
                    load_spec(spec)
                self.assertEqual(cm.exception.field, field)
                self.assertEqual(cm.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_json_file_with_a_duplicate_key(self):
        path = os.path.join(tempfile.mkdtemp(), "spec.json")
        with open(path, "w") as f:
            f.write('{"name": "a", "name": "b"}')
        with self.assertRaises(mixopt.InvalidArgumentError) as cm:
            load_spec(path)
        self.assertIn("'name' appears twice", str(cm.exception))

    def test_json_file(self):
        path = os.path.join(tempfile.mkdtemp(), "spec.json")
        with open(path, "w") as f:
            json.dump(harness.small_spec(), f)
        self.assertEqual(load_spec(path).scales[1].flops_per_step, 1e10)


class ProgressTest(unittest.TestCase):
    def studies(self):
        from types import SimpleNamespace as NS
        running = NS(id=4, state="running", budget_flops=100.0, spent_flops=25.0,
                     trials_by_state={"running": 2, "succeeded": 1})
        done = NS(id=4, state="completed", budget_flops=100.0, spent_flops=100.0, trials_by_state={"succeeded": 5})
        return running, done

    def test_line_per_change_without_tqdm(self):
        import builtins
        real_import = builtins.__import__

        def no_tqdm(name, *a, **kw):
            if name.startswith("tqdm"):
                raise ImportError(name)
            return real_import(name, *a, **kw)

        err = io.StringIO()
        running, done = self.studies()
        with mock.patch("builtins.__import__", no_tqdm), contextlib.redirect_stderr(err):
            show = client_module._progress(True)
            for st in (running, running, done, None):
                show(st)
        self.assertEqual(err.getvalue().splitlines(), [
            "study 4 running: 2 running, 1 succeeded, 0 failed; budget 25% spent",
            "study 4 completed: 0 running, 5 succeeded, 0 failed; budget 100% spent",
        ])

    def test_tqdm_bar_follows_the_budget(self):
        import tqdm  # noqa: F401  (python3-tqdm)
        err = io.StringIO()
        running, done = self.studies()
        with contextlib.redirect_stderr(err):
            show = client_module._progress(True)
            show(running)
            show(done)
            show(None)
        self.assertIn("study 4", err.getvalue())
        self.assertIn("completed; 0 running, 5 succeeded", err.getvalue())

    def test_callable_and_off(self):
        seen = []
        running, done = self.studies()
        show = client_module._progress(seen.append)
        show(running)
        show(None)
        self.assertEqual(seen, [running])
        client_module._progress(False)(running)  # shows nothing, raises nothing


class ErrorTest(unittest.TestCase):
    def test_field_of(self):
        self.assertEqual(errors.field_of("target.scale: \"x\" is not among the scales: invalid argument"), "target.scale")
        self.assertEqual(errors.field_of("domains[0].name: bad"), "domains[0].name")
        self.assertIsNone(errors.field_of("study 7: not found"))
        self.assertIsNone(errors.field_of("no colon here"))

    def test_codes_map_to_classes(self):
        class Err(grpc.RpcError):
            def __init__(self, code, details):
                self._c, self._d = code, details

            def code(self):
                return self._c

            def details(self):
                return self._d

        e = errors.from_rpc_error(Err(grpc.StatusCode.INVALID_ARGUMENT, "budget_flops: must be positive"))
        self.assertIsInstance(e, mixopt.InvalidArgumentError)
        self.assertIsInstance(e, ValueError)
        self.assertEqual(e.field, "budget_flops")
        self.assertIsInstance(errors.from_rpc_error(Err(grpc.StatusCode.NOT_FOUND, "study 3: not found")),
                              mixopt.NotFoundError)
        self.assertIsInstance(errors.from_rpc_error(Err(grpc.StatusCode.PERMISSION_DENIED, "no")),
                              mixopt.PermissionDeniedError)
        other = errors.from_rpc_error(Err(grpc.StatusCode.INTERNAL, "boom"))
        self.assertIs(type(other), mixopt.MixoptError)
        self.assertEqual(other.code, grpc.StatusCode.INTERNAL)


if __name__ == "__main__":
    unittest.main()
