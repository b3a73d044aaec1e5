"""The on-disk format of layer-wise IG results, both ways: `<out>/manifest.json` and the shards in `<out>/scores/`.

    from lit_rcqa.attribution import store
    store.write_shard(out, records, rank=0, settings=store.settings_of(manifest))  # one shard, atomically
    records = store.load("runs/NAME/analysis")        # {example id: AttributionRecord}, in dev order
    rec = records[next(iter(records))]
    rec.tokens, rec.layers, rec.importance            # [T] pieces, names, [n_layers, T] float32

Format (schema 3), one shard per (rank, batch) of the prediction loop (`write_shard`):
  scores/<PPPPPPPP>-r<RR>.safetensors  per example k of the shard, its record's `array` fields (see
      `lit_rcqa.attribution.record`; T = its real tokens, n = layers):
      k.importance [n, T] f32   k.signed [n, T] f32   k.delta [n] f64   k.steps [n] i32
      k.offsets [T, 2] i64 (char offsets into the context; -1 outside the passage)
      k.input_ids [T] i64       k.token_type_ids [T] i64 (absent for encoders without segment ids)
      k.converged [n] bool (with an accuracy target: δ ≤ tolerance; absent for a fixed rule)
  scores/<PPPPPPPP>-r<RR>.hidden.safetensors  (optional) k -> [n, T, d] f16/f32 hidden states h_ℓ
  scores/<PPPPPPPP>-r<RR>.json  the commit marker, written last: schema, file names, sizes and SHA-256
      of the tensor files, `settings` (what the shard was computed with: `settings_of(manifest)`), and per
      example every other field of its record (id, dev position, text fields, tokens, spans, probabilities,
      the n-best probability, the explained window, ...) plus `hidden` (whether row k has hidden states);
      its own `sha256` over all of that (`encode_sidecar`), so an edited or damaged sidecar is refused like a
      damaged tensor file.
P is the dev position of the shard's first example, R the rank. No file of a shard is ever replaced: should
any file of that name exist (a resume next to a damaged shard, tensor files of a killed writer), the writer
adds `-N` (`<P>-r<R>-1.json`). Files are written to a temp name (`.<name>.lit_rcqa.tmp-<host>-<pid>`,
`process.temp_path`) and committed without replacing, sidecar last, so a shard is complete or absent.
Only JSON and safetensors are ever parsed: nothing is unpickled.

The record's fields drive both directions (`COLUMNS`): a new field is one edit in record.py, plus
SCHEMA_VERSION + 1. Schema 2 is the same layout (before records carried the n-best probability, the window
and F(h), which its sidecars hold too); schema 1 had no settings and no sidecar checksum.

Every shard must agree with the folder's manifest (or, without one, with the other shards) on every setting
that changes the numbers; a mismatch is refused naming the folder and the settings. Schema 1 shards are
still read, but only under the schema 1 manifest written with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from lit_rcqa import process
from lit_rcqa.attribution.record import AttributionRecord
from lit_rcqa.errors import UserError

SCHEMA_VERSION = 3
LEGACY_SCHEMA = 1        # before shards carried their settings and sidecars their own checksum
SCHEMAS = (LEGACY_SCHEMA, 2, SCHEMA_VERSION)  # every schema this version reads
SCORES_DIR = "scores"
MANIFEST = "manifest.json"
SHARD_PATTERN = re.compile(r"^(\d{8})-r(\d{2,})(?:-(\d+))?\.json$")
# Only files this package left behind: a shard file's name, our marker, the writer's host and pid (the host is
# absent in names written before it was added), never a user's `.x.tmp-1`.
TEMP_PATTERN = re.compile(r"^\.\d{8}-r\d{2,}(?:-\d+)?(?:\.hidden)?\.(?:safetensors|json)"
                          + re.escape(process.TEMP_MARKER) + r"(?:(?P<host>[A-Za-z0-9_.-]+)-)?(?P<pid>\d+)$")
# A shard's tensor file (committed before its sidecar; without one it is the leftover of a killed writer).
TENSOR_PATTERN = re.compile(r"^(\d{8}-r\d{2,}(?:-\d+)?)(?:\.hidden)?\.safetensors$")
SHARD_SUFFIXES = (".json", ".safetensors", ".hidden.safetensors")
# Manifest keys that change no example's numbers: a moved run folder, how many dev questions were asked for.
NOT_SETTINGS = ("schema", "model.path", "data.num_examples")


# --- the field table: how each field of AttributionRecord is stored -------------------------------------------
@dataclasses.dataclass(frozen=True)
class Column:
    name: str                   # the record's field
    key: str                    # its name on disk: "k.<key>" in the tensor file, or the sidecar's per-example key
    kind: str                   # "array" (tensor file), "hidden" (hidden-state file) or "json" (sidecar)
    required: bool              # every stored record has it (else: absent in some shards, read as the default)
    hint: Any = None            # the field's type (json: how a JSON value becomes the field's value)
    dtype: str = ""             # array: numpy dtype
    shape: tuple[str, ...] = ()  # array: in terms of n (layers), T (tokens), or a literal size


def _columns() -> tuple[Column, ...]:
    hints = typing.get_type_hints(AttributionRecord)
    columns = []
    for f in dataclasses.fields(AttributionRecord):
        meta = f.metadata
        required = bool(meta.get("required")) or (f.default is dataclasses.MISSING
                                                  and f.default_factory is dataclasses.MISSING)
        if "array" in meta:
            dtype, shape = meta["array"]
            columns.append(Column(f.name, meta.get("key", f.name), "array", required, dtype=dtype, shape=shape))
        else:
            kind = "hidden" if meta.get("hidden") else "json"
            columns.append(Column(f.name, meta.get("key", f.name), kind, required, hints[f.name]))
    return tuple(columns)


COLUMNS = _columns()
ARRAY_COLUMNS = tuple(c for c in COLUMNS if c.kind == "array")
JSON_COLUMNS = tuple(c for c in COLUMNS if c.kind == "json")
HIDDEN_FLAG = "hidden"  # per-example sidecar key: row k of the shard has hidden states
# The sidecar keys of the store's own index (`_entries`): the example's id and dev position.
ID_KEY, POSITION_KEY = (next(c.key for c in COLUMNS if c.name == name) for name in ("example_id", "position"))
REQUIRED_KEYS = tuple(c.key for c in JSON_COLUMNS if c.required)


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(hint: Any, value: Any) -> Any:
    """A JSON value as the field's declared type: lists become tuples where the field is a tuple, and so on."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `X | None`: the value is an X
        return _from_json(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        items = args[:1] * len(value) if args[-1:] == (Ellipsis,) else args
        if len(items) != len(value):
            raise ValueError(f"{len(value)} items, expected {len(items)}")
        return tuple(_from_json(a, v) for a, v in zip(items, value))
    if origin is list:
        return [_from_json(args[0], v) for v in value]
    if hint in (str, int, float, bool) and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"not a {hint.__name__}")
    return hint(value)


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


def is_stale_temp(name: str) -> bool:
    """A temp file of a shard's (`temp_path`) whose writer is gone: written on this host (or before names said
    which) by a process that no longer runs. A live writer's, or another host's, is never stale here."""
    m = TEMP_PATTERN.match(name)
    return m is not None and process.writer_is_gone(m.group("host"), int(m.group("pid")))


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


# --- writing --------------------------------------------------------------------------------------
def _example_meta(record: AttributionRecord) -> dict[str, Any]:
    """A record's sidecar entry: every `json` column, and whether it has hidden states."""
    meta = {c.key: _to_json(getattr(record, c.name)) for c in JSON_COLUMNS}
    meta[HIDDEN_FLAG] = record.hidden is not None
    return meta


def encode_arrays(records: Sequence[AttributionRecord]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-record arrays keyed "k.<key>" (k = row in the shard), in their columns' dtypes and shapes, and
    hidden states keyed "k". A record whose arrays do not fit their columns is a bug of its maker: ValueError."""
    scores, hidden = {}, {}
    for k, record in enumerate(records):
        sizes = {"n": len(record.layers), "T": len(record.tokens)}
        for column in ARRAY_COLUMNS:
            value = getattr(record, column.name)
            if value is None:
                if column.required:
                    raise ValueError(f"record {record.example_id!r} has no {column.name}, which every shard holds")
                continue
            shape = tuple(sizes[s] if s in sizes else int(s) for s in column.shape)
            scores[f"{k}.{column.key}"] = np.ascontiguousarray(np.asarray(value).astype(column.dtype).reshape(shape))
        if record.hidden is not None:
            hidden[str(k)] = np.ascontiguousarray(record.hidden)
    return scores, hidden


def write_shard(out_dir: str | Path, records: Sequence[AttributionRecord], *, rank: int,
                settings: Mapping[str, Any], batch_idx: int = 0) -> Optional[str]:
    """Write one shard of `records` into `<out_dir>/scores/` (see the module docstring); its name, or None
    when there is nothing to write. `settings` (`settings_of(manifest)`) say what the numbers were computed with.

    Every file goes to a temp name and is committed under a name none of a shard's files holds, never over an
    existing one; the sidecar, which names and checksums the tensor files and itself, is committed last, so a
    shard is complete or absent even after `kill -9`."""
    if not records:
        return None
    from safetensors.numpy import save as to_safetensors

    scores, hidden = encode_arrays(records)  # first: a record that does not fit leaves nothing behind
    folder = Path(out_dir) / SCORES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    # A name none of whose files exist: tensor files are committed without replacing too, so two writers can
    # never pair one's sidecar with the other's tensors under a shared name.
    name = free_shard_name(folder, min(r.position for r in records), rank)
    tensors = {}
    for kind, arrays, suffix in (("scores", scores, ".safetensors"), ("hidden", hidden, ".hidden.safetensors")):
        if not arrays:
            continue
        data = to_safetensors(arrays)
        process.write_bytes_atomic(folder / f"{name}{suffix}", data, replace=False)
        tensors[kind] = {"file": f"{name}{suffix}", "bytes": len(data), "sha256": sha256_bytes(data)}
    sidecar = {"schema": SCHEMA_VERSION, "rank": rank, "batch_idx": batch_idx, "settings": dict(settings),
               "tensors": tensors, "examples": [_example_meta(r) for r in records]}
    process.write_bytes_atomic(folder / f"{name}.json", encode_sidecar(sidecar), replace=False)
    return name


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
    if not isinstance(manifest, dict) or manifest.get("schema") not in SCHEMAS:
        raise UserError(f"{path}: not an IG manifest of schema {', '.join(map(str, SCHEMAS))}; use another --out")
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
    """A sidecar's JSON, checked: well formed, a known schema, every required key and (schema 2 on) its own
    checksum."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"corrupt IG shard {path}: not valid JSON ({type(err).__name__}); delete it and re-run "
                        "to recompute its examples") from None
    ok = (isinstance(meta, dict) and meta.get("schema") in SCHEMAS
          and isinstance(meta.get("examples"), list) and isinstance(meta.get("tensors"), dict))
    if ok:
        ok = all(isinstance(e, dict) and all(k in e for k in REQUIRED_KEYS) for e in meta["examples"])
    if not ok:
        raise UserError(f"corrupt IG shard {path}: not a schema {SCHEMA_VERSION} shard sidecar; delete it and re-run")
    if meta["schema"] != LEGACY_SCHEMA and (meta.get("sha256") != sha256_bytes(_canonical(meta))
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
            ex_id = ex[ID_KEY]
            if ex_id not in seen:  # the same example from a second shard (resume, DDP): keep the first
                seen[ex_id] = (int(ex[POSITION_KEY]), ex_id, path, row, bool(ex.get(HIDDEN_FLAG)))
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
        ids.update(ex[ID_KEY] for ex in meta["examples"])
    return ids


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
    """Row `row` of a shard as a record: its sidecar entry `ex` and its arrays, each checked against `COLUMNS`."""
    values = {}
    for column in JSON_COLUMNS:
        if column.key in ex:
            try:
                values[column.name] = _from_json(column.hint, ex[column.key])
            except (TypeError, ValueError, StopIteration):
                raise UserError(f"corrupt IG shard {path}: field {column.key!r} of example {row} is not "
                                "of its type; delete it and re-run") from None
    sizes = {"n": len(values["layers"]), "T": len(values["tokens"])}
    for column in ARRAY_COLUMNS:
        value = arrays.get(f"{row}.{column.key}")
        if value is None and not column.required:
            continue
        shape = tuple(sizes[s] if s in sizes else int(s) for s in column.shape)
        if value is None or str(value.dtype) != column.dtype or value.shape != shape:
            raise UserError(f"corrupt IG shard {path}: array {row}.{column.key} of {ex[ID_KEY]!r} is missing or "
                            "has the wrong type/shape")
        values[column.name] = value
    return AttributionRecord(**values)


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
