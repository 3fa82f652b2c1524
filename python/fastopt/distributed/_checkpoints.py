"""Sharded's checkpoints: the whole state gathered from every process's pieces (one file, the one a
single process's fastopt.save writes), and a whole state loaded on any number of processes, each
keeping its pieces. Every method is collective, and all or nothing on every process.
"""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._flat import Inputs
from ._collectives import agree, same_everywhere
from ._layout import Layout, min_piece
from ._state import assemble, cut

# Why params that share memory are refused (fastopt._flat.Inputs's message).
TIED = "a sharded update updates each element on one process"


class Checkpoints:
    """The checkpoint methods of Sharded (its state: the wrapped optimizer, the communicator and
    the layout)."""

    optimizer: Optimizer
    comm: Any
    rank: int
    size: int
    bucket_bytes: int
    _layout: Layout | None
    _layout_key: Any
    _broken: str | None

    def _refuse_if_broken(self) -> None:
        """A Sharded whose processes' states differ (a failure mid-update) has no one state to
        show or save: its pieces would mix two steps."""
        if self._broken is not None:
            raise RuntimeError(self._broken)

    def _set_layout(self, layout: Layout | None, key: Any) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The state of the whole optimizer, as one process's state_dict() would be (the arrays
        whole, shaped like their params), on every process. Collective."""
        self._refuse_if_broken()
        with self.optimizer._lock:
            own = self.optimizer.state_dict()
            states = self.comm.allgather(own["state"])
            return self._whole(own, states)

    def _whole(self, own: dict[str, Any], states: list[Any]) -> dict[str, Any]:
        if self._layout is not None:
            own["state"] = assemble(self._layout, states)
        return own

    def gathered_state_dict(self, root: int = 0) -> dict[str, Any] | None:
        """state_dict() on process ``root`` only (None elsewhere): one copy of the whole state in
        memory instead of one per process. Collective."""
        self._refuse_if_broken()
        with self.optimizer._lock:
            own = self.optimizer.state_dict()
            states = self.comm.gather(own["state"], root=root)
            return None if states is None else self._whole(own, states)

    def load_state_dict(self, state: dict[str, Any], params: dict[Any, Any] | None = None) -> None:
        """Restore a whole state (from state_dict(), a consolidated file, or a single process's
        optimizer), each process keeping its shard. Every process passes the same state. Before
        the first update, pass the params too: the layout comes from them. Collective; on an
        error on any process every process raises and nothing changes."""
        with self.optimizer._lock:
            self._load(state, params)

    def _load(self, state: dict[str, Any], params: dict[Any, Any] | None) -> None:
        opt, comm = self.optimizer, self.comm
        error: BaseException | None = None
        mine: dict[str, Any] = {}
        layout = self._layout
        try:
            # The layout of the params given, or of those of the last update, cut as the state
            # layout the loaded state brings (state_format, compact_min_size) wants.
            settings = dict(opt.__dict__, **state.get("hyperparameters", {}))
            entries = None if layout is None else layout.entries
            if params is not None:
                entries = Inputs(params, tied=TIED).entries
            if entries is not None:
                layout = Layout(entries, self.size, min_piece(settings), self.bucket_bytes)
            arrays = state.get("state") if isinstance(state, dict) else None
            if not isinstance(arrays, dict):
                raise ValueError("the state dict's 'state' must be a dict")
            if layout is None:
                if any(arrays.values()):
                    raise ValueError(
                        "Sharded.load_state_dict() before the first update needs the params: "
                        "which part of each array a process keeps comes from them"
                    )
                mine = {name: {} for name in arrays}
            else:
                mine = cut(layout, self.rank, arrays)
            local = dict(state)
            local["state"] = mine
        except BaseException as caught:
            error = caught
        marks = agree(comm, error, None if layout is None else layout.fingerprint)
        same_everywhere(marks, "params (layouts)", "every process loads with the same params")
        backup = opt.state_dict()
        try:
            opt.load_state_dict(local)
        except BaseException as caught:
            error = caught
        try:
            agree(comm, error)
        except BaseException:
            if error is None:  # loaded here, failed elsewhere: back to what it was
                opt.load_state_dict(backup)
            raise
        if layout is not None:  # made anew above, for the loaded state layout
            self._set_layout(layout, (layout.fingerprint, opt.state_format, opt.compact_min_size))

    def save(self, path: Any, params: dict[Any, Any] | None = None) -> None:
        """Write one consolidated checkpoint (fastopt.save's format: a single process, or any
        number of them, loads it), gathered to process 0 and written there atomically. Pass the
        params to save them too (process 0's: they are the same everywhere). Collective."""
        from ..checkpoint import write

        state = self.gathered_state_dict(0)
        error = None
        if state is not None:
            try:
                write(path, state, params)
            except BaseException as caught:
                error = caught
        agree(self.comm, error)

    def load(self, path: Any, params: dict[Any, Any] | None = None) -> None:
        """Restore a checkpoint written by save() or fastopt.save() on any number of processes:
        process 0 reads it, every process keeps its shard. With ``params``, the saved params are
        restored into them too (as fastopt.load does). All or nothing, on every process."""
        from ..checkpoint import CheckpointError, check_params, read, restore_params

        error, payload = None, None
        if self.rank == 0:
            try:
                payload = read(path)
            except BaseException as caught:
                error = caught
        agree(self.comm, error)
        state, saved = self.comm.bcast(payload, root=0)
        try:
            if params is not None:
                check_params(path, self.optimizer, state, params, saved)
        except BaseException as caught:
            error = caught
        agree(self.comm, error)
        try:
            self.load_state_dict(state, params)
        except (TypeError, ValueError) as caught:
            raise CheckpointError(f"{path}: {caught}") from caught
        if params is not None and saved is not None:
            restore_params(params, saved)
            self._broken = None  # every process's params and state are the file's again
