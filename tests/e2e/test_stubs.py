"""stubs/surge.stub.php against the extension: the same Reflection dump (stub_reflect.php) is
taken once from the stub, in a PHP without the extension, and once from the loaded extension;
any class, method, parameter, property or constant that is missing or different on either side
fails the test with a readable list."""

import json
import re
import subprocess

import pytest

from conftest import ROOT, surge_so

STUB = ROOT / "stubs" / "surge.stub.php"
REFLECT = ROOT / "tests" / "e2e" / "stub_reflect.php"

# Types that tell nothing: ext-php-rs reports `&Zval` parameters and `Zval` returns as `mixed`
# (and property getters with no type at all), so the stub may be more precise there.
UNTYPED = (None, "mixed")


def reflect(*php_args: str) -> dict:
    res = subprocess.run(["php", "-n", *php_args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip(), f"{' '.join(php_args)} failed:\n{res.stdout}\n{res.stderr}"
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def stub_api() -> dict:
    return reflect(str(REFLECT), "stub", str(STUB))


@pytest.fixture(scope="module")
def ext_api() -> dict:
    return reflect("-d", f"extension={surge_so()}", str(REFLECT), "ext")


def signature(name: str, params: list) -> str:
    def one(p):
        s = f"{p['type']} " if p["type"] else ""
        s += ("&" if p["by_ref"] else "") + ("..." if p["variadic"] else "") + "$" + p["name"]
        if p["default"] is not None:
            s += f" = {p['default']}"
        elif p["optional"] and not p["variadic"]:
            s += " = <optional>"
        return s

    return f"{name}({', '.join(one(p) for p in params)})"


def compare(ext: dict, stub: dict) -> list[str]:
    """Every disagreement between the extension's API and the stub's, one line each."""
    out = []

    def sides(what: str, e: dict, s: dict):
        """Reports the names on one side only ("{}" in `what` is the name); returns the rest."""
        for name in sorted(e.keys() - s.keys()):
            out.append(f"{what.format(name)}: in the extension, missing from the stub")
        for name in sorted(s.keys() - e.keys()):
            out.append(f"{what.format(name)}: in the stub, not in the extension")
        return sorted(e.keys() & s.keys())

    def differ(where: str, field: str, e, s):
        if e != s:
            out.append(f"{where}: {field} is {e!r} in the extension but {s!r} in the stub")

    for k in sides("constant {}", ext["constants"], stub["constants"]):
        differ(f"constant {k}", "value", ext["constants"][k], stub["constants"][k])

    for cls in sides("class {}", ext["classes"], stub["classes"]):
        e, s = ext["classes"][cls], stub["classes"][cls]
        for field in ("kind", "final", "abstract", "parent", "interfaces"):
            differ(cls, field, e[field], s[field])

        for k in sides(f"constant {cls}::{{}}", e["constants"], s["constants"]):
            differ(f"{cls}::{k}", "value", e["constants"][k]["value"], s["constants"][k]["value"])

        for prop in sides(f"property {cls}::${{}}", e["properties"], s["properties"]):
            ep, sp = e["properties"][prop], s["properties"][prop]
            where = f"{cls}::${prop}"
            # Not `readonly`: the extension's getter-only properties report none, yet writing
            # one throws, so the stub declares them readonly.
            for field in ("visibility", "static"):
                differ(where, field, ep[field], sp[field])
            if ep["type"] not in UNTYPED:
                differ(where, "type", ep["type"], sp["type"])

        for meth in sides(f"method {cls}::{{}}()", e["methods"], s["methods"]):
            em, sm = e["methods"][meth], s["methods"][meth]
            where = f"{cls}::{meth}()"
            for field in ("visibility", "static", "final", "abstract"):
                differ(where, field, em[field], sm[field])
            if em["return"] not in UNTYPED:
                differ(where, "return type", em["return"], sm["return"])
            ep, sp = em["params"], sm["params"]
            bad = len(ep) != len(sp)
            for i, (a, b) in enumerate(zip(ep, sp)):
                bad |= any(a[f] != b[f] for f in ("name", "optional", "variadic", "by_ref"))
                bad |= a["type"] not in UNTYPED and a["type"] != b["type"]
                bad |= a["default"] is not None and b["default"] is not None and a["default"] != b["default"]
            if bad:
                out.append(
                    f"{where}: parameters differ\n"
                    f"    extension: {signature(meth, ep)}\n"
                    f"    stub:      {signature(meth, sp)}"
                )
    return out


def test_stub_matches_the_extension(ext_api, stub_api):
    problems = compare(ext_api, stub_api)
    if problems:
        pytest.fail(
            f"{STUB.relative_to(ROOT)} and the extension disagree ({len(problems)}):\n"
            + "\n".join(f"  - {p}" for p in problems),
            pytrace=False,
        )


def test_stub_documents_and_types_everything(stub_api):
    """Every class, method, property and constant has a doc comment; every parameter, property
    and return (constructors aside) has a type."""
    problems = []
    for cls, c in stub_api["classes"].items():
        if not c["doc"]:
            problems.append(f"class {cls}: no doc comment")
        for name, k in c["constants"].items():
            if not k["doc"]:
                problems.append(f"{cls}::{name}: no doc comment")
        for name, p in c["properties"].items():
            if not p["doc"]:
                problems.append(f"{cls}::${name}: no doc comment")
            if not p["type"]:
                problems.append(f"{cls}::${name}: no type")
        for name, m in c["methods"].items():
            if not m["doc"]:
                problems.append(f"{cls}::{name}(): no doc comment")
            if not m["return"] and name != "__construct":
                problems.append(f"{cls}::{name}(): no return type")
            for p in m["params"]:
                if not p["type"]:
                    problems.append(f"{cls}::{name}(): parameter ${p['name']} has no type")

    # Reflection cannot see doc comments of global constants before PHP 8.4: read the source.
    source = STUB.read_text()
    declared = re.findall(r"^\s*const\s+(\w+)\s*=", source, re.M)
    documented = set(re.findall(r"/\*\*(?:(?!\*/).)*\*/\s*const\s+(\w+)\s*=", source, re.S))
    for name in declared:
        if name not in documented:
            problems.append(f"constant {name}: no doc comment")
    assert set(declared) >= set(stub_api["constants"]), "constants defined other than by `const`"

    if problems:
        pytest.fail(f"{STUB.relative_to(ROOT)} lacks docs or types:\n" + "\n".join(f"  - {p}" for p in problems), pytrace=False)


def test_comparison_catches_a_missing_method(ext_api, stub_api):
    """The comparison itself: a method, parameter or constant taken out of the stub is reported."""
    broken = json.loads(json.dumps(stub_api))
    server = broken["classes"]["Surge\\WebSocket\\Server"]
    del server["methods"]["push"]
    server["methods"]["disconnect"]["params"].pop()
    broken["constants"]["WEBSOCKET_CLOSE_NORMAL"] = "999"
    problems = "\n".join(compare(ext_api, broken))
    assert "method Surge\\WebSocket\\Server::push(): in the extension, missing from the stub" in problems
    assert "Surge\\WebSocket\\Server::disconnect(): parameters differ" in problems
    assert "constant WEBSOCKET_CLOSE_NORMAL: value is '1000' in the extension but '999' in the stub" in problems
