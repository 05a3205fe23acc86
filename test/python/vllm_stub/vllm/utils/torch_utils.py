"""vllm.utils.torch_utils.direct_register_custom_op: defines the op in
torch's "vllm" library (schema inferred from op_func), registers op_func as
its kernel for the platform's dispatch key and fake_impl as its fake impl.
Without torch (CPU tests) it only records the op, and vLLM's modules bind
the Python functions (their `except AttributeError` fallback)."""

try:
    import torch
    from torch.library import Library
except ImportError:  # no torch: CPU tests
    torch = None
    Library = None

# Every op registered, with or without torch: name -> (op_func, mutates_args, fake_impl)
REGISTERED = {}

vllm_lib = Library("vllm", "FRAGMENT") if Library is not None else None  # noqa


def direct_register_custom_op(
    op_name,
    op_func,
    mutates_args=None,
    fake_impl=None,
    target_lib=None,
    dispatch_key=None,
    tags=(),
):
    if mutates_args is None:
        mutates_args = []
    if dispatch_key is None:
        from vllm.platforms import current_platform

        dispatch_key = current_platform.dispatch_key
    REGISTERED[op_name] = (op_func, list(mutates_args), fake_impl)
    if vllm_lib is None:
        return
    infer_schema = getattr(torch.library, "infer_schema", None)
    if infer_schema is not None:
        schema_str = infer_schema(op_func, mutates_args=mutates_args)
    else:  # torch 2.4
        import importlib

        impl = importlib.import_module("torch._custom_op.impl")
        schema_str = impl.infer_schema(op_func, mutates_args)
    my_lib = target_lib or vllm_lib
    my_lib.define(op_name + schema_str, tags=tags)
    my_lib.impl(op_name, op_func, dispatch_key=dispatch_key)
    if fake_impl is not None:
        my_lib._register_fake(op_name, fake_impl)
