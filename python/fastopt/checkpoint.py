"""Checkpoints that resume exactly: ``fastopt.save(path, opt, params)`` and ``fastopt.load(...)``.

One ``.npz`` file holds the optimizer's state_dict() and, when given, the params. It is read with
``allow_pickle=False``, so loading a checkpoint can never run code: the structure (keys, names,
counters, hyperparameters) is a JSON manifest stored as a string array, and every array is its own
entry. Keys that are not strings (ints, floats, tuples, None, bools) are tagged with their type in
the manifest and come back as they were. The file is written to a temporary file beside the target
and renamed over it, so a crash mid-write never replaces a good checkpoint with half of one. The
file's permissions follow the umask, like any file the process writes (see _create_beside).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from ._base import Optimizer
from ._dtypes import is_bfloat16, is_half
from ._precision import options_after
from ._state import HALF_STATES
from ._types import Params

__all__ = ["save", "load", "CheckpointError"]

_FORMAT = "fastopt-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not fit the optimizer or params given."""


def _encode_key(key: Hashable) -> Any:
    if isinstance(key, bool):
        return {"bool": key}
    if isinstance(key, str):
        return {"str": key}
    if isinstance(key, int):
        return {"int": key}
    if isinstance(key, float):
        return {"float": repr(key)}
    if key is None:
        return {"none": None}
    if isinstance(key, tuple):
        return {"tuple": [_encode_key(k) for k in key]}
    raise TypeError(
        f"cannot checkpoint the key {key!r} ({type(key).__name__}): keys must be str, int, "
        "float, bool, None or tuples of those"
    )


_KEY_DECODERS: dict[str, Callable[[Any], Hashable]] = {
    "bool": bool,
    "str": str,
    "int": int,
    "float": float,
    "none": lambda v: None,
}


def _decode_key(code: Any) -> Hashable:
    ((kind, value),) = code.items()
    if kind == "tuple":
        return tuple(_decode_key(k) for k in value)
    return _KEY_DECODERS[kind](value)


def _encode_value(value: Any) -> Any:
    if isinstance(value, tuple):  # betas
        return {"tuple": [_encode_value(v) for v in value]}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_decode_value(v) for v in value["tuple"])
    return value


def save(path: str | os.PathLike, opt: Optimizer, params: Params | None = None) -> None:
    """Write the optimizer's state (and the params, if given) to one .npz file, atomically."""
    write(path, opt.state_dict(), params)


def write(path: str | os.PathLike, state: dict[str, Any], params: Params | None = None) -> None:
    """Write a state_dict() (and the params, if given) to one .npz file, atomically: save() for a
    state that is not one optimizer's (fastopt.distributed's, gathered from every process)."""
    # Imported here, not with fastopt: together they were a third of `import fastopt`.
    import json

    arrays: dict[str, np.ndarray] = {}
    bfloat16: list[str] = []  # arrays stored as their bits: .npy has no bfloat16

    def store(value: np.ndarray) -> str:
        name = f"a{len(arrays)}"
        value = np.asarray(value)
        if is_bfloat16(value.dtype):
            bfloat16.append(name)
            value = value.view(np.uint16)
        arrays[name] = value
        return name

    manifest = {
        "format": _FORMAT,
        "kind": state["kind"],
        "hyperparameters": {k: _encode_value(v) for k, v in state["hyperparameters"].items()},
        "counters": state["counters"],
        "state": {
            name: [[_encode_key(k), store(v)] for k, v in per_key.items()]
            for name, per_key in state["state"].items()
        },
        "params": None
        if params is None
        else [[_encode_key(k), store(np.asarray(v))] for k, v in params.items()],
    }
    manifest["bfloat16"] = bfloat16
    arrays["__manifest__"] = np.array(json.dumps(manifest))
    handle, temporary = _create_beside(Path(path))
    try:
        with os.fdopen(handle, "wb") as file:
            # numpy >= 2.1's stub has a keyword `allow_pickle: bool` that mypy matches to
            # **arrays; the names here ("a0", "a1", ..., "__manifest__") are never that keyword.
            # (unused-ignore: older numpy's stub has no such keyword, so nothing to ignore there.)
            np.savez(file, **arrays)  # type: ignore[arg-type, unused-ignore]
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _create_beside(target: Path) -> tuple[int, str]:
    """Create a new, empty temporary file beside `target`: (its descriptor, its name).

    Created with mode 0o666 by os.open, so the kernel applies the umask (and a directory's default
    ACL) just as it does for open(target, "wb") or np.savez: a checkpoint gets the permissions any
    other file written by the process gets (0o644 under the usual umask 022). tempfile.mkstemp
    would force 0o600, and fixing that with fchmod would need the umask, which can only be read by
    setting it (os.umask is process-wide, so that races with other threads creating files).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = target.parent / f".{target.name}.{os.urandom(6).hex()}.tmp"
        try:
            return os.open(name, flags, 0o666), str(name)
        except FileExistsError:  # another save chose the same name: draw again
            continue
    raise FileExistsError(f"could not create a temporary file beside {target}")


def load(path: str | os.PathLike, opt: Optimizer, params: Params | None = None) -> None:
    """Restore a checkpoint written by save() into `opt` (and into `params`, if given).

    Params are restored in place: each array of `params` must exist in the checkpoint with the
    same shape and dtype, and be writeable; it receives the saved values (a scalar param is
    replaced, so `params` must then be a mutable mapping). All or nothing: every field of the
    file, every param and the optimizer's lr schedule at the loaded step are checked before
    anything (the optimizer or a param) is changed.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, corrupt or not a fastopt checkpoint; or a field of it does
        not fit (the message names it); or it was written for another optimizer kind; or its
        params do not match `params`; or the optimizer's lr schedule fails at the loaded step.
    """
    state, saved_params = read(path)
    if params is not None:
        check_params(path, opt, state, params, saved_params)
    try:
        opt.load_state_dict(state)  # validates everything, then restores
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from error
    if params is not None and saved_params is not None:  # (params without saved_params raised)
        restore_params(params, saved_params)


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[Hashable, np.ndarray] | None]:
    """(the state_dict, the saved params or None) of a checkpoint file; CheckpointError if it is
    not a readable one. Nothing is checked against an optimizer yet."""
    manifest, arrays = _read(path)
    return _decode(path, manifest, arrays)


def check_params(
    path: Any, opt: Optimizer, state: dict[str, Any], params: Params, saved: Any
) -> None:
    """Every param of ``params`` can take its saved value, and the half ones have the master
    copies their settings keep: CheckpointError otherwise."""
    _check_params(path, params, saved)
    if isinstance(opt, Optimizer):  # the line-search methods keep no half-precision state
        _check_half_state(path, opt, state, params)


def restore_params(params: Params, saved_params: dict[Hashable, np.ndarray]) -> None:
    """The saved values into ``params``: arrays in place, scalars replaced (checked before)."""
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            np.copyto(value, saved_params[key])
        else:
            params[key] = saved_params[key][()]


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import json
    import zipfile

    try:
        # Opened here rather than by np.load, which leaks the handle of a corrupt zip file.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
            manifest = json.loads(str(data["__manifest__"]))
            arrays = {name: data[name] for name in data.files if name != "__manifest__"}
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
    ) as error:
        raise CheckpointError(f"{path} is not a readable fastopt checkpoint: {error}") from error
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    if found != _FORMAT:
        raise CheckpointError(f"{path} is not a fastopt checkpoint (format {found!r})")
    return manifest, arrays


def _field(path: Any, manifest: dict[str, Any], name: str, kind: type) -> Any:
    value = manifest.get(name)
    if not isinstance(value, kind):
        raise CheckpointError(
            f"{path} is damaged: its manifest's {name!r} must be a {kind.__name__}; "
            f"got {type(value).__name__}"
        )
    return value


def _entries(
    path: Any, where: str, entries: Any, arrays: dict[str, np.ndarray]
) -> dict[Hashable, np.ndarray]:
    """{key: array} from the manifest's [[key code, array name], ...] at `where`."""
    if not isinstance(entries, list):
        raise CheckpointError(f"{path} is damaged: {where} must be a list")
    decoded = {}
    for index, entry in enumerate(entries):
        try:
            code, name = entry
            decoded[_decode_key(code)] = arrays[name]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"{path} is damaged: {where}[{index}] ({entry!r}) is not a stored key and array: "
                f"{type(error).__name__}: {error}"
            ) from error
    return decoded


def _decode(
    path: Any, manifest: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[Hashable, np.ndarray] | None]:
    _restore_bfloat16(path, manifest, arrays)
    hyperparameters = _field(path, manifest, "hyperparameters", dict)
    states = _field(path, manifest, "state", dict)
    saved_params = manifest.get("params")
    state = {
        "kind": manifest.get("kind"),
        "hyperparameters": {k: _decode_value(v) for k, v in hyperparameters.items()},
        "counters": _field(path, manifest, "counters", dict),
        "state": {
            name: _entries(path, f"state[{name!r}]", entries, arrays)
            for name, entries in states.items()
        },
    }
    if saved_params is not None:
        saved_params = _entries(path, "params", saved_params, arrays)
    return state, saved_params


def _check_params(
    path: Any, params: Params, saved_params: dict[Hashable, np.ndarray] | None
) -> None:
    """Every param can take its saved value: checked before the optimizer or any param changes."""
    if saved_params is None:
        raise CheckpointError(f"{path} holds no params")
    for key, value in params.items():
        if key not in saved_params:
            raise CheckpointError(f"{path} has no param {key!r}")
        saved = saved_params[key]
        if isinstance(value, np.ndarray):
            if (value.shape, value.dtype) != (saved.shape, saved.dtype):
                raise CheckpointError(
                    f"param {key!r} is {value.dtype}{value.shape} here but "
                    f"{saved.dtype}{saved.shape} in {path}"
                )
            if not value.flags.writeable:
                raise CheckpointError(
                    f"param {key!r} is read-only: load restores params in place, so they must "
                    "be writeable"
                )
        elif saved.shape != () or saved.dtype.kind not in "fiu":
            raise CheckpointError(
                f"param {key!r} is a scalar here but {saved.dtype}{saved.shape} in {path}"
            )
        elif not isinstance(params, MutableMapping):
            raise CheckpointError(
                f"param {key!r} is a scalar, replaced on load, so params must be a mutable "
                f"mapping; got {type(params).__name__}"
            )


def _restore_bfloat16(path: Any, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """The arrays saved as the bits of bfloat16 ones, as bfloat16 again (ml_dtypes needed)."""
    names = manifest.get("bfloat16", [])
    if not names:
        return
    if not (
        isinstance(names, list)
        and all(isinstance(name, str) and name in arrays for name in names)
        and len(set(names)) == len(names)
    ):
        raise CheckpointError(
            f"{path} is damaged: its manifest's 'bfloat16' must list stored arrays, each once"
        )
    try:
        import ml_dtypes
    except ImportError as error:
        raise CheckpointError(
            f"{path} holds bfloat16 arrays: reading them needs ml_dtypes (pip install ml_dtypes, "
            "or fastopt's extra [bf16])"
        ) from error
    for name in names:
        if arrays[name].dtype != np.uint16:
            raise CheckpointError(f"{path} is damaged: array {name} is not bfloat16 bits")
        arrays[name] = arrays[name].view(ml_dtypes.bfloat16)


def _check_half_state(path: Any, opt: Optimizer, state: dict[str, Any], params: Params) -> None:
    """Every half param with optimizer state has the master copy (or compensation) its settings
    keep: a checkpoint without them would resume with different numbers."""
    try:
        options = options_after(opt, state["hyperparameters"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: {error}") from error
    kept = (options["master_weights"], options["compensation"])  # in HALF_STATES' order
    wanted = [name for name, on in zip(HALF_STATES, kept) if on]
    arrays = state["state"]
    for key, value in params.items():
        if not (isinstance(value, np.ndarray) and is_half(value.dtype)):
            continue
        has_state = any(key in arrays.get(name, {}) for name in opt._state_names)
        for name in wanted:
            if has_state and key not in arrays.get(name, {}):
                raise CheckpointError(
                    f"{path} holds optimizer state for the {value.dtype} param {key!r} but no "
                    f"{name!r} for it, which this optimizer's settings keep: resuming without "
                    "it would change the numbers"
                )
