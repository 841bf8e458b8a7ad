"""A TFLite flatbuffer written from tensors and operators, with the schema's generated builders
(the ``tflite`` package) and ``flatbuffers``: one subgraph, float32 and int32 tensors, builtin
operators with their options tables and custom operators with flexbuffer options.

::

    w = TFLiteWriter()
    x = w.tensor("input", (1, 8, 8, 1))
    k = w.constant("kernel", np.ones((4, 3, 3, 1), np.float32))
    y = w.tensor("y", (1, 8, 8, 4))
    w.builtin("CONV_2D", [x, k, -1], [y], "Conv2DOptions", Padding=0, StrideW=1, StrideH=1)
    data = w.finish([x], [y])

A tensor index of -1 is an omitted optional input, as TFLite has it.
"""

from __future__ import annotations

import importlib

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

_TYPES = {np.dtype(np.float32): "FLOAT32", np.dtype(np.int32): "INT32"}


def _schema(name: str):
    """The generated module of one schema table or enum (``tflite.Conv2DOptions``, ...)."""
    return importlib.import_module(f"tflite.{name}")


def _enum(name: str, member: str) -> int:
    enum = getattr(_schema(name), name)
    if not hasattr(enum, member):
        raise ValueError(f"{name} has no member {member!r}")
    return getattr(enum, member)


class TFLiteWriter:
    """Collects tensors, constant buffers and operators; :meth:`finish` returns the file's bytes."""

    def __init__(self, description: str = "bnn-lab") -> None:
        self.description = description
        self.tensors: list[tuple[str, tuple[int, ...], str, int]] = []  # name, shape, type, buffer
        self.buffers: list[bytes] = [b""]  # buffer 0: the empty one, for tensors without data
        self.opcodes: list[tuple[int, str | None]] = []  # (builtin code, custom name)
        self.operators: list[tuple[int, list[int], list[int], tuple | None, bytes | None]] = []

    def tensor(self, name: str, shape, dtype=np.float32) -> int:
        """A tensor computed by an operator (or a model input); returns its index."""
        self.tensors.append((name, tuple(int(s) for s in shape), _TYPES[np.dtype(dtype)], 0))
        return len(self.tensors) - 1

    def constant(self, name: str, value: np.ndarray) -> int:
        """A tensor whose data is stored in the file (float32 or int32); returns its index."""
        value = np.ascontiguousarray(value)
        self.buffers.append(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
        self.tensors.append((name, tuple(value.shape), _TYPES[value.dtype], len(self.buffers) - 1))
        return len(self.tensors) - 1

    def _opcode(self, builtin: int, custom: str | None) -> int:
        key = (builtin, custom)
        if key not in self.opcodes:
            self.opcodes.append(key)
        return self.opcodes.index(key)

    def builtin(self, op: str, inputs: list[int], outputs: list[int], options: str | None = None, **fields) -> None:
        """A builtin operator (``BuiltinOperator`` member name) with its options table's fields
        (``Padding=0, StrideW=2, ...`` as the schema names them)."""
        code = _enum("BuiltinOperator", op)
        self.operators.append((self._opcode(code, None), list(inputs), list(outputs), (options, fields), None))

    def custom(self, op: str, inputs: list[int], outputs: list[int], options: dict[str, int]) -> None:
        """A custom operator (``LceBconv2d``, ...) with its options as a flexbuffer map."""
        code = _enum("BuiltinOperator", "CUSTOM")
        blob = bytes(flexbuffers.Dumps(options))
        self.operators.append((self._opcode(code, op), list(inputs), list(outputs), None, blob))

    def _vector(self, b, table: str, field: str, values, kind: str) -> int:
        getattr(_schema(table), f"{table}Start{field}Vector")(b, len(values))
        prepend = getattr(b, f"Prepend{kind}")
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    def _options(self, b, name: str, fields: dict) -> int:
        mod = _schema(name)
        getattr(mod, f"{name}Start")(b)
        for field, value in fields.items():
            getattr(mod, f"{name}Add{field}")(b, value)
        return getattr(mod, f"{name}End")(b)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        b = flatbuffers.Builder(1024)
        buffers = []
        for data in self.buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)  # 16-byte aligned constants
                b.head = b.head - len(data)
                b.Bytes[b.head : b.head + len(data)] = data
                vec = b.EndVector()
            _schema("Buffer").BufferStart(b)
            if vec is not None:
                _schema("Buffer").BufferAddData(b, vec)
            buffers.append(_schema("Buffer").BufferEnd(b))
        tensors = []
        for name, shape, dtype, buffer in self.tensors:
            name_off = b.CreateString(name)
            shape_off = self._vector(b, "Tensor", "Shape", list(shape), "Int32")
            t = _schema("Tensor")
            t.TensorStart(b)
            t.TensorAddShape(b, shape_off)
            t.TensorAddType(b, _enum("TensorType", dtype))
            t.TensorAddBuffer(b, buffer)
            t.TensorAddName(b, name_off)
            tensors.append(t.TensorEnd(b))
        operators = []
        for opcode, ins, outs, builtin, custom in self.operators:
            ins_off = self._vector(b, "Operator", "Inputs", ins, "Int32")
            outs_off = self._vector(b, "Operator", "Outputs", outs, "Int32")
            opts_off = None
            if builtin is not None and builtin[0] is not None:
                opts_off = self._options(b, builtin[0], builtin[1])
            custom_off = None
            if custom is not None:
                custom_off = self._vector(b, "Operator", "CustomOptions", list(custom), "Uint8")
            o = _schema("Operator")
            o.OperatorStart(b)
            o.OperatorAddOpcodeIndex(b, opcode)
            o.OperatorAddInputs(b, ins_off)
            o.OperatorAddOutputs(b, outs_off)
            if opts_off is not None:
                o.OperatorAddBuiltinOptionsType(b, _enum("BuiltinOptions", builtin[0]))
                o.OperatorAddBuiltinOptions(b, opts_off)
            if custom_off is not None:
                o.OperatorAddCustomOptions(b, custom_off)
                o.OperatorAddCustomOptionsFormat(b, _enum("CustomOptionsFormat", "FLEXBUFFERS"))
            operators.append(o.OperatorEnd(b))
        sg = _schema("SubGraph")
        tensors_off = self._vector(b, "SubGraph", "Tensors", tensors, "UOffsetTRelative")
        in_off = self._vector(b, "SubGraph", "Inputs", list(inputs), "Int32")
        out_off = self._vector(b, "SubGraph", "Outputs", list(outputs), "Int32")
        ops_off = self._vector(b, "SubGraph", "Operators", operators, "UOffsetTRelative")
        name_off = b.CreateString("main")
        sg.SubGraphStart(b)
        sg.SubGraphAddTensors(b, tensors_off)
        sg.SubGraphAddInputs(b, in_off)
        sg.SubGraphAddOutputs(b, out_off)
        sg.SubGraphAddOperators(b, ops_off)
        sg.SubGraphAddName(b, name_off)
        subgraph = sg.SubGraphEnd(b)
        codes = []
        for builtin, custom in self.opcodes:
            custom_off = b.CreateString(custom) if custom is not None else None
            oc = _schema("OperatorCode")
            oc.OperatorCodeStart(b)
            oc.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
            oc.OperatorCodeAddBuiltinCode(b, builtin)
            if custom_off is not None:
                oc.OperatorCodeAddCustomCode(b, custom_off)
            oc.OperatorCodeAddVersion(b, 1)
            codes.append(oc.OperatorCodeEnd(b))
        m = _schema("Model")
        codes_off = self._vector(b, "Model", "OperatorCodes", codes, "UOffsetTRelative")
        subgraphs_off = self._vector(b, "Model", "Subgraphs", [subgraph], "UOffsetTRelative")
        buffers_off = self._vector(b, "Model", "Buffers", buffers, "UOffsetTRelative")
        desc_off = b.CreateString(self.description)
        m.ModelStart(b)
        m.ModelAddVersion(b, 3)
        m.ModelAddOperatorCodes(b, codes_off)
        m.ModelAddSubgraphs(b, subgraphs_off)
        m.ModelAddDescription(b, desc_off)
        m.ModelAddBuffers(b, buffers_off)
        b.Finish(m.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())
