#!/usr/bin/env python3
"""Checks flake.lock against flake.nix without nixpkgs or network.

`nix flake lock` cannot run where GitHub is out of reach, so the lock is written by hand
from published lock files. A lock that disagrees with flake.nix makes Nix re-lock (or
fail) on every user's machine, so this checks what Nix itself compares:

- flake.lock is JSON, lock version 7, with a root node;
- the root node's inputs are exactly flake.nix's inputs;
- each input's node has `original` equal to its URL (github:OWNER/REPO[/REF]) and a
  `locked` of the same repository with a 40-hex rev, an SRI sha256 narHash and a
  lastModified time;
- each `inputs.X.inputs.Y.follows = "Z"` is the node's `inputs.Y = ["Z"]`, and every
  node reference points at a node that exists; no node is left unreferenced.

flake.nix's inputs are read with `nix-instantiate --eval` (importing flake.nix does not
evaluate its outputs). Usage: check-flake-lock.py [DIR] (default: the repository root).
"""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

HEX40 = re.compile(r"^[0-9a-f]{40}$")


def flake_inputs(flake_nix: Path) -> dict:
    expr = f"(import {flake_nix.resolve()}).inputs"
    try:
        out = subprocess.run(
            ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except FileNotFoundError:
        sys.exit("check-flake-lock: nix-instantiate is missing: run `make setup` (Debian package nix-bin)")
    except subprocess.CalledProcessError as e:
        sys.exit(f"check-flake-lock: cannot read the inputs of {flake_nix}:\n{e.stderr}")
    return json.loads(out)


def original_from_url(url: str) -> dict:
    m = re.fullmatch(r"github:([^/]+)/([^/]+)(?:/(.+))?", url)
    if not m:
        raise ValueError(f"only github: URLs are checked here, not {url!r}")
    owner, repo, ref = m.groups()
    original = {"owner": owner, "repo": repo, "type": "github"}
    if ref:
        original["ref"] = ref
    return original


def is_sri_sha256(h: object) -> bool:
    if not isinstance(h, str) or not h.startswith("sha256-"):
        return False
    try:
        return len(base64.b64decode(h[len("sha256-"):], validate=True)) == 32
    except ValueError:
        return False


def check(flake_dir: Path) -> list[str]:
    errors = []
    lock_path = flake_dir / "flake.lock"
    try:
        lock = json.loads(lock_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [f"{lock_path} is not readable JSON: {e}"]
    if lock.get("version") != 7:
        errors.append(f"lock version is {lock.get('version')!r}, expected 7")
    nodes = lock.get("nodes")
    root_name = lock.get("root")
    if not isinstance(nodes, dict) or root_name not in nodes:
        return errors + [f"the lock has no nodes or no root node named {root_name!r}"]

    inputs = flake_inputs(flake_dir / "flake.nix")
    root_inputs = nodes[root_name].get("inputs", {})
    if set(root_inputs) != set(inputs):
        errors.append(
            f"root inputs {sorted(root_inputs)} differ from flake.nix inputs {sorted(inputs)}"
        )

    referenced = {root_name}
    for node_name, node in nodes.items():
        for ref in node.get("inputs", {}).values():
            # A follows is a path of input names from the root; a plain string names a node.
            target = ref if isinstance(ref, str) else None
            if isinstance(ref, list):
                target = root_inputs.get(ref[0]) if len(ref) == 1 else None
                if target is None:
                    errors.append(f"node {node_name}: follows {ref} does not name a root input")
            if target is not None:
                if target not in nodes:
                    errors.append(f"node {node_name}: input points at missing node {target!r}")
                referenced.add(target)
    for unused in sorted(set(nodes) - referenced):
        errors.append(f"node {unused!r} is not used by any input")

    for name, spec in inputs.items():
        node_name = root_inputs.get(name)
        if not isinstance(node_name, str) or node_name not in nodes:
            continue
        node = nodes[node_name]
        try:
            want = original_from_url(spec.get("url", ""))
        except ValueError as e:
            errors.append(f"input {name}: {e}")
            continue
        if node.get("original") != want:
            errors.append(f"input {name}: original {node.get('original')} does not match url {spec.get('url')!r} ({want})")
        locked = node.get("locked", {})
        for key in ("type", "owner", "repo"):
            if locked.get(key) != want[key]:
                errors.append(f"input {name}: locked.{key} is {locked.get(key)!r}, expected {want[key]!r}")
        if not HEX40.match(str(locked.get("rev", ""))):
            errors.append(f"input {name}: locked.rev {locked.get('rev')!r} is not a 40-hex commit")
        if not is_sri_sha256(locked.get("narHash")):
            errors.append(f"input {name}: locked.narHash {locked.get('narHash')!r} is not an SRI sha256 hash")
        if not isinstance(locked.get("lastModified"), int):
            errors.append(f"input {name}: locked.lastModified is missing or not an integer")
        for sub, sub_spec in spec.get("inputs", {}).items():
            follows = sub_spec.get("follows")
            if follows is not None and node.get("inputs", {}).get(sub) != follows.split("/"):
                errors.append(
                    f"input {name}: flake.nix has inputs.{sub}.follows = {follows!r}, "
                    f"the lock has {node.get('inputs', {}).get(sub)!r}"
                )
    return errors


def main() -> int:
    flake_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    errors = check(flake_dir)
    for e in errors:
        print(f"check-flake-lock: {e}", file=sys.stderr)
    if errors:
        print(f"check-flake-lock: {flake_dir / 'flake.lock'} does not match flake.nix", file=sys.stderr)
        return 1
    print(f"check-flake-lock: {flake_dir / 'flake.lock'} matches flake.nix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
