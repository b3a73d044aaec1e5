"""The one reader of stored layer-wise IG results: `<out>/manifest.json` and the shards in `<out>/scores/`.

    from lit_rcqa.attribution import store
    records = store.load("runs/NAME/analysis")        # {example id: AttributionRecord}, in dev order
    rec = records[next(iter(records))]
    rec.tokens, rec.layers, rec.importance            # [T] pieces, names, [n_layers, T] float32

Format (schema 2), written by `callbacks.ig_writer.IGShardWriter`, one shard per (rank, batch):
  scores/<PPPPPPPP>-r<RR>.safetensors  per example k of the shard (T = its real tokens, n = layers):
      k.importance [n, T] f32   k.signed [n, T] f32   k.delta [n] f64   k.steps [n] i32
      k.offsets [T, 2] i64 (char offsets into the context; -1 outside the passage)
      k.input_ids [T] i64       k.token_type_ids [T] i64 (absent for encoders without segment ids)
      k.converged [n] bool (with an accuracy target: δ ≤ tolerance; absent for a fixed rule)
  scores/<PPPPPPPP>-r<RR>.hidden.safetensors  (optional) k -> [n, T, d] f16/f32 hidden states h_ℓ
  scores/<PPPPPPPP>-r<RR>.json  the commit marker, written last: schema, file names, sizes and SHA-256
      of the tensor files, `settings` (what the shard was computed with: `settings_of(manifest)`), and per
      example its id, dev position, text fields, tokens, spans and probs; its own `sha256` over all of that
      (`encode_sidecar`), so an edited or damaged sidecar is refused like a damaged tensor file.
P is the dev position of the shard's first example, R the rank. No file of a shard is ever replaced: should
any file of that name exist (a resume next to a damaged shard, tensor files of a killed writer), the writer
adds `-N` (`<P>-r<R>-1.json`). Files are written to a temp name (`.<name>.lit_rcqa.tmp-<host>-<pid>`,
`temp_path`) and committed without replacing, sidecar last, so a shard is complete or absent.
Only JSON and safetensors are ever parsed: nothing is unpickled.

Every shard must agree with the folder's manifest (or, without one, with the other shards) on every setting
that changes the numbers; a mismatch is refused naming the folder and the settings. Schema 1 (no settings,
no sidecar checksum) is still read, but only under the schema 1 manifest written with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError

SCHEMA_VERSION = 2
LEGACY_SCHEMA = 1        # before shards carried their settings and sidecars their own checksum
SCORES_DIR = "scores"
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^(\d{8})-r(\d{2,})(?:-(\d+))?\.json$")
TEMP_MARKER = ".lit_rcqa.tmp-"
# Only files this package left behind: a shard file's name, our marker, the writer's host and pid (the host is
# absent in names written before it was added), never a user's `.x.tmp-1`.
TEMP_PATTERN = re.compile(r"^\.\d{8}-r\d{2,}(?:-\d+)?(?:\.hidden)?\.(?:safetensors|json)"
                          + re.escape(TEMP_MARKER) + r"(?:(?P<host>[A-Za-z0-9_.-]+)-)?(?P<pid>\d+)$")
# A shard's tensor file (committed before its sidecar; without one it is the leftover of a killed writer).
TENSOR_PATTERN = re.compile(r"^(\d{8}-r\d{2,}(?:-\d+)?)(?:\.hidden)?\.safetensors$")
SHARD_SUFFIXES = (".json", ".safetensors", ".hidden.safetensors")
# Manifest keys that change no example's numbers: a moved run folder, how many dev questions were asked for.
NOT_SETTINGS = ("schema", "model.path", "data.num_examples")
# Per-example arrays of a shard: name -> (dtype, shape in terms of n = layers, T = tokens).
ARRAYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "importance": ("float32", ("n", "T")), "signed": ("float32", ("n", "T")), "delta": ("float64", ("n",)),
    "steps": ("int32", ("n",)), "offsets": ("int64", ("T", "2")), "input_ids": ("int64", ("T",)),
    "token_type_ids": ("int64", ("T",)), "converged": ("bool", ("n",)),
}
OPTIONAL_ARRAYS = ("token_type_ids", "converged")
EXAMPLE_KEYS = ("id", "position", "question", "context", "tokens", "passage_start", "passage_end", "layers",
                "pred_start", "pred_end", "pred_text", "start_prob", "end_prob", "gold_texts")


def shard_name(first_position: int, rank: int) -> str:
    return f"{first_position:08d}-r{rank:02d}"


def free_shard_name(folder: Path, first_position: int, rank: int) -> str:
    """`shard_name`, or with `-1`, `-2`, ... while any file of a shard (sidecar or tensor file) holds that name."""
    base = name = shard_name(first_position, rank)
    k = 0
    while any((Path(folder) / f"{name}{suffix}").exists() for suffix in SHARD_SUFFIXES):
        k += 1
        name = f"{base}-{k}"
    return name


def orphan_tensor_files(folder: Path) -> list[Path]:
    """Tensor files whose sidecar was never committed: left by a writer killed between the two."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if (m := TENSOR_PATTERN.match(p.name)) and not (folder / f"{m.group(1)}.json").exists())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def temp_path(path: Path) -> Path:
    """Where `path` is written before it is committed (the name `TEMP_PATTERN` recognises): it names the
    writer's host and pid, so that a later run removes it only once that process is gone."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{_host()}-{os.getpid()}")


def pid_is_alive(pid: int) -> bool:
    """Whether a process of that id runs on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temp(name: str) -> bool:
    """A temp file of ours (`temp_path`) whose writer is gone: written on this host (or before names said
    which) by a process that no longer runs. A live writer's, or another host's, is never stale here."""
    m = TEMP_PATTERN.match(name)
    if m is None or m.group("host") not in (None, _host()):
        return False
    return not pid_is_alive(int(m.group("pid")))


def _canonical(meta: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_sidecar(meta: Mapping[str, Any]) -> bytes:
    """The sidecar's bytes: `meta` plus `sha256`, the checksum of its canonical JSON (sorted keys, no spaces)."""
    return json.dumps({**meta, "sha256": sha256_bytes(_canonical(meta))}, ensure_ascii=False).encode("utf-8")


def settings_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's settings that change the numbers: what every shard must have been computed with."""
    def strip(value: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        return {k: strip(v, f"{prefix}{k}.") if isinstance(v, Mapping) else v
                for k, v in value.items() if f"{prefix}{k}" not in NOT_SETTINGS}

    return strip(manifest, "")


# --- manifest ---------------------------------------------------------------------------------------
def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of an output folder, or None when there is none yet."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable manifest ({err}); delete the folder or use another --out") from None
    if not isinstance(manifest, dict) or manifest.get("schema") not in (LEGACY_SCHEMA, SCHEMA_VERSION):
        raise UserError(f"{path}: not an IG manifest of schema {LEGACY_SCHEMA} or {SCHEMA_VERSION}; use another --out")
    return manifest


def manifest_conflicts(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two manifests (nested dicts compared key by key)."""
    keys = sorted(set(old) | set(new))
    diff = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diff += manifest_conflicts(a, b, f"{prefix}{key}.")
        elif a != b:
            diff.append(f"{prefix}{key}")
    return diff


# --- shard metadata ---------------------------------------------------------------------------------
def _read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's JSON, checked: well formed, a known schema and, for schema 2, its own checksum."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"corrupt IG shard {path}: not valid JSON ({type(err).__name__}); delete it and re-run "
                        "to recompute its examples") from None
    ok = (isinstance(meta, dict) and meta.get("schema") in (LEGACY_SCHEMA, SCHEMA_VERSION)
          and isinstance(meta.get("examples"), list) and isinstance(meta.get("tensors"), dict))
    if ok:
        ok = all(isinstance(e, dict) and all(k in e for k in EXAMPLE_KEYS) for e in meta["examples"])
    if not ok:
        raise UserError(f"corrupt IG shard {path}: not a schema {SCHEMA_VERSION} shard sidecar; delete it and re-run")
    if meta["schema"] == SCHEMA_VERSION and (meta.get("sha256") != sha256_bytes(_canonical(meta))
                                             or not isinstance(meta.get("settings"), dict)):
        raise UserError(f"corrupt IG shard {path}: its content does not match its checksum (edited or damaged); "
                        f"delete {path.stem}.* and re-run to recompute its examples")
    return meta


def _shard_order(path: Path) -> tuple[int, int, int]:
    """(first position, rank, -N suffix): a shard written under a taken name comes after the original."""
    position, rank, k = SHARD_PATTERN.match(path.name).groups()
    return int(position), int(rank), int(k or 0)


def _sidecars(out_dir: Path, expected: Mapping[str, Any] | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Every sidecar, each checked against the settings `expected` (default: the manifest's, else the first
    shard's). A schema 1 shard says nothing of its settings: only the schema 1 manifest written with it does."""
    folder = Path(out_dir) / SCORES_DIR
    if not folder.is_dir():
        return []
    manifest = read_manifest(out_dir)
    reference = "this command's"
    if expected is None and manifest is not None:
        expected, reference = settings_of(manifest), "the manifest's"
    vouched = manifest is not None and manifest["schema"] == LEGACY_SCHEMA
    found = []
    for path in sorted((p for p in folder.iterdir() if SHARD_PATTERN.match(p.name)), key=_shard_order):
        meta = _read_sidecar(path)
        if meta["schema"] == LEGACY_SCHEMA:
            if not vouched:
                raise UserError(f"{folder}: shard {path.name} was written by an older version and does not say "
                                "which IG settings it was computed with (no manifest of that version vouches for "
                                f"it); delete {Path(out_dir)} and re-run, or pass another --out")
        elif expected is None:
            expected, reference = meta["settings"], f"shard {path.name}'s"
        else:
            diff = manifest_conflicts(expected, meta["settings"])
            if diff:
                raise UserError(f"{folder}: shard {path.name} was computed with other settings than {reference} "
                                f"({', '.join(diff)}); delete {Path(out_dir)} to start over, or pass another --out")
        found.append((path, meta))
    return found


def _entries(out_dir: Path) -> list[tuple[int, str, Path, int, bool]]:
    """(position, id, sidecar, row, has hidden states) per stored example, duplicates dropped, in dev order.

    Only this small index stays in memory; a shard's text fields are read again when its records are built.
    """
    seen: dict[str, tuple] = {}
    for path, meta in _sidecars(out_dir):
        for row, ex in enumerate(meta["examples"]):
            if ex["id"] not in seen:  # the same example from a second shard (resume, DDP): keep the first
                seen[ex["id"]] = (int(ex["position"]), ex["id"], path, row, bool(ex.get("hidden")))
    return sorted(seen.values(), key=lambda e: (e[0], e[1]))


def finished_ids(out_dir: str | Path, expected: Mapping[str, Any] | None = None) -> set[str]:
    """Ids of the examples in complete shards (read from the sidecars only; tensor files must exist).

    Every shard must have been computed with `expected` settings (default: the manifest's); see `_sidecars`.
    """
    ids = set()
    for path, meta in _sidecars(Path(out_dir), expected):
        for info in meta["tensors"].values():
            target = path.parent / info["file"]
            if not target.is_file() or target.stat().st_size != info["bytes"]:
                raise UserError(f"corrupt IG shard {target}: missing or of the wrong size; delete {path.name} "
                                "and re-run to recompute its examples")
        ids.update(ex["id"] for ex in meta["examples"])
    return ids


def nbest_probabilities(out_dir: str | Path) -> dict[str, float]:
    """The n-best probability of each example's predicted answer (the model's confidence), by id."""
    probabilities = {}
    for path, meta in _sidecars(Path(out_dir)):
        for ex in meta["examples"]:
            probabilities.setdefault(ex["id"], float(ex.get("nbest_probability", float("nan"))))
    return probabilities


# --- tensors ----------------------------------------------------------------------------------------
def _load_tensors(sidecar: Path, meta: dict, kind: str) -> dict[str, np.ndarray]:
    """Read, verify (size, SHA-256) and parse one safetensors file of a shard."""
    from safetensors.numpy import load as parse_safetensors

    info = meta["tensors"].get(kind)
    if info is None:
        return {}
    path = sidecar.parent / info["file"]
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"corrupt IG shard {path}: cannot read ({err.strerror}); delete {sidecar.name} and re-run") \
            from None
    if len(data) != info["bytes"] or sha256_bytes(data) != info["sha256"]:
        raise UserError(f"corrupt IG shard {path}: size or checksum differs from {sidecar.name}; delete both and "
                        "re-run to recompute its examples")
    try:
        return parse_safetensors(data)
    except Exception as err:  # the parser's own error types vary by version
        raise UserError(f"corrupt IG shard {path}: not a safetensors file ({type(err).__name__})") from None


def _record(path: Path, ex: dict, row: int, arrays: dict[str, np.ndarray]) -> AttributionRecord:
    n, T = len(ex["layers"]), len(ex["tokens"])
    sizes = {"n": n, "T": T, "2": 2}
    values = {}
    for name, (dtype, shape) in ARRAYS.items():
        value = arrays.get(f"{row}.{name}")
        if value is None and name in OPTIONAL_ARRAYS:
            values[name] = None
            continue
        if value is None or str(value.dtype) != dtype or value.shape != tuple(sizes[s] for s in shape):
            raise UserError(f"corrupt IG shard {path}: array {row}.{name} of {ex['id']!r} is missing or has the "
                            f"wrong type/shape")
        values[name] = value
    span = ex.get("evidence_span")
    return AttributionRecord(
        example_id=ex["id"], question=ex["question"], context=ex["context"], tokens=list(ex["tokens"]),
        offsets=values["offsets"], passage_start=int(ex["passage_start"]), passage_end=int(ex["passage_end"]),
        layers=list(ex["layers"]), importance=values["importance"], signed=values["signed"], delta=values["delta"],
        steps=values["steps"], pred_start=int(ex["pred_start"]), pred_end=int(ex["pred_end"]),
        pred_text=ex["pred_text"], start_prob=float(ex["start_prob"]), end_prob=float(ex["end_prob"]),
        gold_texts=tuple(ex["gold_texts"]), input_ids=values["input_ids"], token_type_ids=values["token_type_ids"],
        evidence_span=None if span is None else (int(span[0]), int(span[1])), converged=values["converged"])


def iter_records(out_dir: str | Path) -> Iterator[AttributionRecord]:
    """Every stored example once, in dev order, streaming: only a few decoded shards are held at a time."""
    entries = _entries(Path(out_dir))
    ranks = {SHARD_PATTERN.match(path.name).group(2) for _, _, path, _, _ in entries}
    cache: OrderedDict[Path, tuple[dict, dict[str, np.ndarray]]] = OrderedDict()  # DDP interleaves ranks' shards
    for _, _, path, row, _ in entries:
        if path not in cache:
            meta = _read_sidecar(path)
            cache[path] = (meta, _load_tensors(path, meta, "scores"))
            while len(cache) > 2 * max(1, len(ranks)):
                cache.popitem(last=False)
        meta, arrays = cache[path]
        yield _record(path, meta["examples"][row], row, arrays)


def load(out_dir: str | Path) -> dict[str, AttributionRecord]:
    """All stored records by example id, in dev order."""
    return {record.example_id: record for record in iter_records(out_dir)}


class HiddenStates(Mapping):
    """Lazy {example id: [n_layers, T, d] hidden states (float16 or float32)}: a shard's file is read on access."""

    def __init__(self, out_dir: Path):
        self._where = {ex_id: (path, row) for _, ex_id, path, row, hidden in _entries(out_dir) if hidden}
        self._cached: tuple[Path | None, dict] = (None, {})

    def __getitem__(self, example_id: str) -> np.ndarray:
        path, row = self._where[example_id]
        if self._cached[0] != path:
            self._cached = (path, _load_tensors(path, _read_sidecar(path), "hidden"))
        value = self._cached[1].get(str(row))
        if value is None or value.ndim != 3:
            raise UserError(f"corrupt IG shard {path}: hidden states of {example_id!r} are missing or malformed")
        return value

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load_hidden(out_dir: str | Path) -> HiddenStates:
    """Hidden states of the first N examples (for t-SNE), by id; one row per scored layer."""
    return HiddenStates(Path(out_dir))
