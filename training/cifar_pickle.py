"""An opcode-level reader for CIFAR batch files: it parses the structure torchvision's files have and nothing else.

A CIFAR batch (``data_batch_1``, ``test_batch``, CIFAR-100's ``train``/``test``) is a pickled dict: ``data`` is a
numpy uint8 array ``[n, 3072]`` and the labels are lists of ints, plus names and file names. Python's unpickler, even
restricted to a few numpy globals, hands pickle state to numpy (a BUILD on a dtype can make an object dtype whose
pointers come from the file, and an array's state can declare more bytes than it brings): a crafted 280-byte file
then corrupts memory. This reader never calls anything the file names and never gives numpy any state from the
file. It walks the opcodes (:func:`pickletools.genops` decodes each opcode's argument without executing it) with a
small stack machine that knows only plain values (dict, list, tuple, str, bytes, int, bool, None) and three
recognised shapes of call:

* ``_codecs.encode(<str>, 'latin1')`` (how Python 3 pickles bytes at protocol 2) -> those bytes;
* ``numpy.dtype('u1', False, True)`` followed by BUILD with the plain uint8 state -> a uint8 marker;
* ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` followed by BUILD with
  ``(version, shape, <uint8 marker>, fortran, <bytes>)`` -> ``np.frombuffer`` of exactly ``prod(shape)`` counted bytes.

Anything else (another global, another opcode, another state, a byte count that does not match the shape) is a
:class:`CifarFileError` naming the file. Memory is bounded by the file size (checked before reading) and by a
budget on the bytes that ``_codecs.encode`` may create (at most the file's size in all).
"""
from __future__ import annotations

import math
import pickletools
from typing import Any, Dict, List, Tuple

import numpy as np
from ilif_lava.errors import IlifLavaError


class CifarFileError(IlifLavaError, ValueError):
    """A CIFAR batch file that exists but is not one (or asks for code or foreign state); the message names it."""


_ENCODE, _RECONSTRUCT, _NDARRAY, _DTYPE, _BYTES = "encode", "reconstruct", "ndarray", "dtype", "bytes"
_GLOBALS: Dict[Tuple[str, str], str] = {
    ("_codecs", "encode"): _ENCODE,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("__builtin__", "bytes"): _BYTES,       # b'' at protocol 2 is bytes()
    ("builtins", "bytes"): _BYTES,
}
MAX_DIM = 2 ** 31 - 1


class _Global:
    """A global the file named; only a marker (the real callable is never looked up)."""

    def __init__(self, role: str, dotted: str) -> None:
        self.role, self.dotted = role, dotted


class _Uint8:
    """``numpy.dtype('u1')`` before (``built=False``) and after its BUILD."""

    def __init__(self) -> None:
        self.built = False


class _Array:
    """``_reconstruct(ndarray, ...)`` before its BUILD (``array is None``) and after it."""

    def __init__(self) -> None:
        self.array: Any = None


class _Bad(Exception):
    """Internal: the reason a pickle is refused (becomes a CifarFileError naming the file)."""


_MARK = object()


def _text(v: Any) -> Any:
    """A Python 2 str read as bytes (the official archives) compared as text; anything else unchanged."""
    return v.decode("latin-1") if isinstance(v, bytes) else v


def _plain_dtype_state(state: Any) -> bool:
    # numpy writes (version, byteorder, subarray, names, fields, elsize, alignment, flags) = (3, '|', None, None,
    # None, -1, -1, 0) for a plain uint8 dtype; anything else (an elsize, flags that mark object items) is refused.
    return (isinstance(state, tuple) and len(state) == 8 and state[0] in (3, 4) and _text(state[1]) in ("|", "<", ">", "=")
            and state[2:5] == (None, None, None) and state[5:] == (-1, -1, 0))


class _Machine:
    """The stack machine over :func:`pickletools.genops` (see the module docstring for what it accepts)."""

    def __init__(self, raw: bytes, max_items: int) -> None:
        self.raw = raw
        self.max_items = max_items
        self.stack: List[Any] = []
        self.memo: Dict[int, Any] = {}
        self.encode_budget = len(raw)

    # -- stack helpers -------------------------------------------------------------------------------------------
    def pop_mark(self) -> List[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        raise _Bad("MARK missing")

    def top(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise _Bad("stack underflow")
        return self.stack[-1]

    def pop(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise _Bad("stack underflow")
        return self.stack.pop()

    @staticmethod
    def key(k: Any) -> Any:
        if not isinstance(k, (str, bytes, int)):
            raise _Bad(f"dict key of type {type(k).__name__}")
        return k

    # -- calls ---------------------------------------------------------------------------------------------------
    def call(self, func: Any, args: Any) -> Any:
        if not isinstance(func, _Global) or not isinstance(args, tuple):
            raise _Bad("REDUCE on something other than an allowed global")
        if func.role == _ENCODE:
            if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
                raise _Bad("_codecs.encode with other arguments than (str, 'latin1')")
            self.encode_budget -= len(args[0])
            if self.encode_budget < 0:
                raise _Bad("more encoded bytes than the file holds")
            return args[0].encode("latin-1")
        if func.role == _BYTES:
            if args:
                raise _Bad("bytes() with arguments")
            return b""
        if func.role == _DTYPE:
            if len(args) != 3 or _text(args[0]) != "u1" or args[1] not in (False, 0) or args[2] not in (True, 1):
                raise _Bad(f"numpy.dtype{args!r:.60}: only the uint8 dtype ('u1') is allowed")
            return _Uint8()
        if func.role == _RECONSTRUCT:
            if (len(args) != 3 or not isinstance(args[0], _Global) or args[0].role != _NDARRAY
                    or args[1] != (0,) or args[2] not in (b"b", "b")):
                raise _Bad("_reconstruct with other arguments than (numpy.ndarray, (0,), b'b')")
            return _Array()
        raise _Bad(f"global {func.dotted} cannot be called")

    def build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, _Uint8) and not inst.built:
            if not _plain_dtype_state(state):
                raise _Bad(f"dtype state {state!r:.80} is not the plain uint8 state")
            inst.built = True
            return
        if not isinstance(inst, _Array) or inst.array is not None:
            raise _Bad("BUILD on something other than a new array or dtype")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Bad("array state is not (1, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _Uint8) or not dtype.built:
            raise _Bad("array dtype is not uint8")
        if (not isinstance(shape, tuple) or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)
                or fortran not in (True, False, 0, 1)):
            raise _Bad(f"array shape {shape!r:.60} is not a tuple of sizes")
        if not isinstance(data, bytes):
            raise _Bad(f"array data is a {type(data).__name__}, not raw bytes")
        count = math.prod(shape)
        if count > self.max_items * 3072:
            raise _Bad(f"array shape {shape} holds more than {self.max_items} images")
        if len(data) != count:
            raise _Bad(f"array shape {shape} needs {count} bytes, the file brings {len(data)}")
        inst.array = np.frombuffer(data, dtype=np.uint8).reshape(shape, order="F" if fortran else "C")

    # -- the opcode loop -----------------------------------------------------------------------------------------
    def run(self) -> Any:
        st, memo = self.stack, self.memo
        for op, arg, pos in pickletools.genops(self.raw):
            name = op.name
            try:
                if name in ("PROTO", "FRAME"):
                    continue
                if name == "STOP":
                    return self.pop()
                if name == "MARK":
                    st.append(_MARK)
                elif name == "POP":
                    self.pop()
                elif name == "POP_MARK":
                    self.pop_mark()
                elif name == "DUP":
                    st.append(self.top())
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = self.top()
                elif name == "MEMOIZE":
                    memo[len(memo)] = self.top()
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    if int(arg) not in memo:
                        raise _Bad(f"memo entry {arg} used before it is set")
                    st.append(memo[int(arg)])
                elif name == "EMPTY_DICT":
                    st.append({})
                elif name == "DICT":
                    items = self.pop_mark()
                    st.append({self.key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})
                elif name in ("SETITEM", "SETITEMS"):
                    items = [self.pop(), self.pop()][::-1] if name == "SETITEM" else self.pop_mark()
                    target = self.top()
                    if not isinstance(target, dict) or len(items) % 2:
                        raise _Bad("SETITEM(S) on something other than a dict")
                    for i in range(0, len(items), 2):
                        target[self.key(items[i])] = items[i + 1]
                elif name == "EMPTY_LIST":
                    st.append([])
                elif name == "LIST":
                    st.append(self.pop_mark())
                elif name in ("APPEND", "APPENDS"):
                    items = [self.pop()] if name == "APPEND" else self.pop_mark()
                    if not isinstance(self.top(), list):
                        raise _Bad("APPEND(S) on something other than a list")
                    st[-1].extend(items)
                elif name == "EMPTY_TUPLE":
                    st.append(())
                elif name == "TUPLE":
                    st.append(tuple(self.pop_mark()))
                elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                    n = int(name[-1])
                    items = [self.pop() for _ in range(n)][::-1]
                    st.append(tuple(items))
                elif name == "NONE":
                    st.append(None)
                elif name in ("NEWTRUE", "NEWFALSE"):
                    st.append(name == "NEWTRUE")
                elif name in ("BININT", "BININT1", "BININT2", "LONG1"):
                    st.append(int(arg))
                elif name in ("SHORT_BINSTRING", "BINSTRING"):
                    st.append(arg.encode("latin-1"))      # a Python 2 str, read as bytes (torchvision's reading)
                elif name in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8"):
                    st.append(bytes(arg))
                elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"):
                    st.append(str(arg))
                elif name in ("GLOBAL", "STACK_GLOBAL"):
                    if name == "GLOBAL":
                        module, _, attr = str(arg).partition(" ")
                    else:
                        attr, module = self.pop(), self.pop()
                        if not isinstance(module, str) or not isinstance(attr, str):
                            raise _Bad("STACK_GLOBAL on something other than two strings")
                    role = _GLOBALS.get((module, attr))
                    if role is None:
                        raise _Bad(f"global {module}.{attr} is not allowed in a CIFAR batch")
                    st.append(_Global(role, f"{module}.{attr}"))
                elif name == "REDUCE":
                    args = self.pop()
                    st.append(self.call(self.pop(), args))
                elif name == "BUILD":
                    state = self.pop()
                    self.build(self.top(), state)
                else:
                    raise _Bad(f"opcode {name} is not allowed in a CIFAR batch")
            except _Bad as exc:
                raise _Bad(f"{exc} (opcode {name} at byte {pos})") from None
            except (IndexError, TypeError, UnicodeEncodeError) as exc:
                raise _Bad(f"malformed pickle at byte {pos} (opcode {name}: {type(exc).__name__})") from None
        raise _Bad("no STOP opcode")


def parse_batch(raw: bytes, max_images: int) -> Dict[str, Any]:
    """The pickled CIFAR dict in ``raw`` with str keys (bytes keys decoded as latin-1) and ``data`` as a read-only
    uint8 array; raises ``_Bad``-derived :class:`CifarFileError` text (without the file name) for anything else."""
    try:
        obj = _Machine(raw, max_images).run()
    except _Bad as exc:
        raise CifarFileError(str(exc)) from None
    except ValueError as exc:            # pickletools: truncated argument, unknown opcode byte
        raise CifarFileError(f"not a pickle ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(obj, dict):
        raise CifarFileError(f"holds a {type(obj).__name__}, expected a CIFAR batch dict")
    out: Dict[str, Any] = {}
    for k, v in obj.items():
        key = k.decode("latin-1") if isinstance(k, bytes) else str(k)
        if isinstance(v, _Array):
            if v.array is None:
                raise CifarFileError(f"key {key!r}: an array without its data")
            v = v.array
        out[key] = v
    return out
