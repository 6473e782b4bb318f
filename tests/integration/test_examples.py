"""The examples apply: every directory under examples/ with manifests in it
is applied with `rprctl apply --dry-run -f DIR` (what a reader types, minus
the writing) against a real rprd, which checks each object against its
kind's schema exactly as a real apply would. A new example directory is
covered without touching this file.

A dry run writes nothing, so no controller ever sees these objects: the
examples' realistic hosts (web-1.example.com, ...) are never resolved or
contacted. The one real apply below stores a Token only.

The GitHub example's Tokens read their secrets from files under /etc/rpr
that do not exist here; that must not stop an apply (a secret is read when
it is used, and a missing one is reported by whoever uses it), which the
last test pins down with a real apply.
"""

import os

import pytest
import yaml

from conftest import REPO

EXAMPLES = os.path.join(REPO, "examples")
# The names `rprctl apply -f DIR` reads (cmd/rprctl/manifest.c); it skips
# dot files and, without -R, subdirectories.
MANIFEST_ENDINGS = (".yaml", ".yml", ".json")


def manifest_files(d):
    return sorted(os.path.join(d, n) for n in os.listdir(d)
                  if not n.startswith(".") and n.endswith(MANIFEST_ENDINGS)
                  and os.path.isfile(os.path.join(d, n)))


def example_dirs():
    return sorted(d for d, _, _ in os.walk(EXAMPLES) if manifest_files(d))


def expected_objects(d):
    """Every object in the directory's files as rprctl names it: kind/name."""
    want = set()
    for f in manifest_files(d):
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc:
                    want.add("%s/%s" % (doc["kind"].lower(), doc["metadata"]["name"]))
    return want


DIRS = example_dirs()


def test_the_examples_are_found():
    # Guards the walk above: were it to find nothing, nothing would be tested.
    rel = {os.path.relpath(d, EXAMPLES) for d in DIRS}
    assert {"quickstart", "github-deploy"} <= rel, rel


@pytest.mark.parametrize("d", DIRS, ids=[os.path.relpath(d, EXAMPLES) for d in DIRS])
def test_example_dir_applies_dry_run(rprd, d):
    rev = rprd.revision()
    p = rprd.ctl("apply", "--dry-run", "-f", d)
    assert p.returncode == 0, (d, p.stdout, p.stderr)

    # One line per object, "server/web-1 created (dry run)": every document
    # of every file was read and accepted.
    lines = p.stdout.splitlines()
    assert lines and all(line.endswith(" (dry run)") for line in lines), p.stdout
    assert {line.split()[0] for line in lines} == expected_objects(d), p.stdout
    assert rprd.revision() == rev, "a dry run wrote to the store"


def test_token_with_a_missing_secret_file_applies(rprd, tmp_path):
    missing = tmp_path / "no-such.secret"
    f = tmp_path / "token.yaml"
    f.write_text("apiVersion: rpr/v1\nkind: Token\nmetadata:\n  name: gh\n"
                 "spec:\n  type: github\n  valueFrom: {file: %s}\n" % missing)
    p = rprd.ctl("apply", "-f", f)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.strip() == "token/gh created", p.stdout
    assert rprd.obj("tokens", "gh")["spec"]["valueFrom"] == {"file": str(missing)}
