#!/usr/bin/env python3
# make_torch_bin.py - write a checkpoint directory's safetensors weights as a
# PyTorch pytorch_model.bin in torch.save's zip layout (archive/data.pkl,
# protocol 2, archive/data/<key> storages, version, byteorder), without
# torch: stand-in classes pickle under torch's names. The state dict is an
# OrderedDict with a _metadata attribute (as Module.state_dict() returns);
# lm_head.weight shares the embedding's storage (the tied head).
# Usage: make_torch_bin.py SRC_DIR OUT.bin [evil|float]: "evil" adds an entry
# that calls os.system, "float" a float in _metadata (opcode BINFLOAT, which
# no tensor state dict needs); a reader must refuse both.
import collections, io, json, pickle, struct, sys, types, zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
torch._utils = utils

class FloatStorage: pass
class BFloat16Storage: pass
class HalfStorage: pass
for c in (FloatStorage, BFloat16Storage, HalfStorage):
    c.__module__ = "torch"
    setattr(torch, c.__name__, c)

def _rebuild_tensor_v2(*a): raise RuntimeError("never called")
_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2

STORAGE = {"F32": (FloatStorage, 4), "BF16": (BFloat16Storage, 2), "F16": (HalfStorage, 2)}

class Storage:
    def __init__(self, key, cls, numel): self.key, self.cls, self.numel = key, cls, numel

class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape
    def __reduce_ex__(self, proto):
        stride, s = [], 1
        for d in reversed(self.shape):
            stride.insert(0, s)
            s *= d
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False,
                                     collections.OrderedDict()))

class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))

class P(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None

def main():
    src, out = sys.argv[1], sys.argv[2]
    raw = open(src + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    sd = collections.OrderedDict()
    blobs = {}
    for i, (name, t) in enumerate((k, v) for k, v in header.items() if k != "__metadata__"):
        a, b = t["data_offsets"]
        cls, size = STORAGE[t["dtype"]]
        st = Storage(str(i), cls, (b - a) // size)
        blobs[st.key] = raw[8 + n + a:8 + n + b]
        sd[name] = Tensor(st, t["shape"])
        if name == "model.embed_tokens.weight":
            sd["lm_head.weight"] = Tensor(st, t["shape"])
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    if sys.argv[3:] == ["evil"]:
        sd["evil"] = Evil()
    if sys.argv[3:] == ["float"]:
        sd._metadata["x"] = 0.5
    buf = io.BytesIO()
    P(buf, protocol=2).dump(sd)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for k, v in blobs.items():
            z.writestr("archive/data/" + k, v)
        z.writestr("archive/version", "3\n")

main()
