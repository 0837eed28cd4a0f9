"""Reading and editing converted ``.tflite`` flatbuffers: graph fixes for XNNPACK int8,
signature tensors and operator names."""

from __future__ import annotations

from typing import Any

import numpy as np

from ravit_keras.console import quiet_native_output


def fix_pixel_input_quantization(tflite: bytes) -> bytes:
    """Sets the uint8 image input to exactly scale 1, zero point 0.

    Calibration estimates the pixel range from the images it saw (e.g. scale
    0.99999); pixels are 0..255 by definition, so the exact values make the
    uint8 input the raw camera pixel.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    for index in graph.inputs:
        tensor = graph.tensors[index]
        if tensor.type == schema.TensorType.UINT8 and tensor.shape is not None and len(tensor.shape) == 4:
            tensor.quantization.scale = [1.0]
            tensor.quantization.zeroPoint = [0]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def symmetrize_matmul_operands(tflite: bytes) -> tuple[bytes, int]:
    """Requantises the right-hand operands of int8 BATCH_MATMULs to zero point 0.

    XNNPACK runs an int8 BATCH_MATMUL only when its right-hand operand (K for
    Q·Kᵀ, V for P·V) has zero point 0; calibration never gives that, so
    attention would fall back to the slow built-in kernel. The operand is the
    output of a projection followed by RESHAPE/TRANSPOSE ops, which all share
    one quantisation; this widens that range to be symmetric around 0 (zero
    point 0, scale max(|min|, |max|)/127). Kernels read quantisation from the
    tensors, so the projection simply requantises to the new scale: the graph
    computes the same function with at most 1 bit less resolution on K and V.

    Returns the new flatbuffer and the number of operands changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    op_name = lambda op: flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)  # noqa: E731
    producer = {t: op for op in graph.operators for t in op.outputs}
    changed = 0
    for op in graph.operators:
        if op_name(op) != "BATCH_MATMUL":
            continue
        chain = [op.inputs[1]]
        while chain[-1] in producer and op_name(producer[chain[-1]]) in ("RESHAPE", "TRANSPOSE"):
            chain.append(producer[chain[-1]].inputs[0])
        tensors = [graph.tensors[t] for t in chain]
        q = tensors[0].quantization
        if tensors[0].type != schema.TensorType.INT8 or q is None or not q.scale or q.zeroPoint[0] == 0:
            continue
        if any(t.quantization is None or list(t.quantization.scale) != list(q.scale)
               or list(t.quantization.zeroPoint) != list(q.zeroPoint) for t in tensors):
            continue  # Not one shared quantisation: leave it to the built-in kernel.
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
        bound = max(abs((-128 - zp) * scale), abs((127 - zp) * scale))
        for t in tensors:
            t.quantization.scale = [bound / 127.0]
            t.quantization.zeroPoint = [0]
            t.quantization.min, t.quantization.max = [-bound], [bound]
        changed += 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


def separate_output_dequantize(tflite: bytes) -> bytes:
    """Gives float consumers of a dequantised graph output their own DEQUANTIZE.

    In the int8 graph with float islands, the float CLS token that leaves the
    graph (through the output DEQUANTIZE) also feeds the float exit LayerNorm.
    The converter's IO rewrite (``modify_model_io_type``) removes output
    DEQUANTIZE ops to make the outputs int8, which would leave that LayerNorm
    reading a deleted tensor; with a DEQUANTIZE of its own it reads the same
    values and the rewrite is safe.
    """
    import copy

    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    outputs = set(int(t) for t in graph.outputs)
    position = 0
    while position < len(graph.operators):
        op = graph.operators[position]
        position += 1
        out = int(op.outputs[0])
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "DEQUANTIZE" or out not in outputs:
            continue
        consumers = [c for c in graph.operators if out in list(c.inputs)]
        if not consumers:
            continue
        tensor = copy.deepcopy(graph.tensors[out])
        tensor.name = tensor.name + b"/for_float_consumers"
        graph.tensors.append(tensor)
        new_index = len(graph.tensors) - 1
        twin = copy.deepcopy(op)
        twin.outputs = [new_index]
        graph.operators.insert(position, twin)
        position += 1
        for c in consumers:
            c.inputs = [new_index if int(t) == out else t for t in c.inputs]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def delegate_input_requantization(tflite: bytes) -> tuple[bytes, int]:
    """Turns each uint8 -> int8 QUANTIZE at a graph input into DEQUANTIZE + QUANTIZE.

    XNNPACK has no kernel that requantises uint8 to int8, so that one QUANTIZE per
    input (the pixels, a later branch's incoming CLS token) ran on LiteRT's built-in
    kernel, outside the delegate. XNNPACK does run uint8 -> float DEQUANTIZE and
    float -> int8 QUANTIZE; with both, the whole submodel is one XNNPACK partition.
    The values are the same: both forms compute round(q_in·s_in / s_out) + z_out on
    integers (the float step is exact for 8-bit values). Only for the ``int8`` mode:
    ``int8-full`` promises an all-integer graph.

    Returns the new flatbuffer and the number of QUANTIZE ops rewritten.
    """
    import copy

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    inputs = {int(t) for t in graph.inputs}
    dequantize = None
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE:
            dequantize = i
    changed = 0
    position = 0
    while position < len(graph.operators):
        op = graph.operators[position]
        position += 1
        if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) != "QUANTIZE":
            continue
        source, target = int(op.inputs[0]), int(op.outputs[0])
        if (source not in inputs or graph.tensors[source].type != schema.TensorType.UINT8
                or graph.tensors[target].type != schema.TensorType.INT8):
            continue
        if dequantize is None:
            code = schema.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
            code.version = 1
            model.operatorCodes.append(code)
            dequantize = len(model.operatorCodes) - 1
        real = copy.deepcopy(graph.tensors[source])
        real.name = real.name + b"/dequantized"
        real.type = schema.TensorType.FLOAT32
        real.quantization = None
        real.buffer = 0
        graph.tensors.append(real)
        real_index = len(graph.tensors) - 1
        step = schema.OperatorT()
        step.opcodeIndex = dequantize
        step.inputs, step.outputs = [source], [real_index]
        graph.operators.insert(position - 1, step)
        position += 1
        op.inputs = [real_index]
        changed += 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changed


def describe_tensors(tflite: bytes) -> dict[str, dict[str, Any]]:
    """Signature tensors of a submodel: name -> index, shape, dtype, quantisation.

    Raises:
        ValueError: if the flatbuffer cannot be read by the LiteRT interpreter.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        with quiet_native_output():
            interpreter = Interpreter(model_content=tflite)
    except Exception as e:  # The interpreter raises ValueError/RuntimeError for bad buffers.
        raise ValueError(f"Not a valid TFLite model: {e}") from None
    runner = interpreter.get_signature_runner()
    positions_in = {d["index"]: i for i, d in enumerate(interpreter.get_input_details())}
    positions_out = {d["index"]: i for i, d in enumerate(interpreter.get_output_details())}
    result = {}
    for io, details, positions in (("input", runner.get_input_details(), positions_in),
                                   ("output", runner.get_output_details(), positions_out)):
        for name, d in details.items():
            scale, zero_point = d["quantization"]
            result[name] = {
                "io": io,
                "position": positions[d["index"]],
                "tensor_name": d["name"],
                "shape": [int(s) for s in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale),
                "zero_point": int(zero_point),
            }
    return result


def builtin_op_names(tflite: bytes) -> list[str]:
    """Names of the operators in the flatbuffer (to check for Flex/custom ops)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        names.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                     if code.customCode is None else f"CUSTOM:{code.customCode.decode()}")
    return names

