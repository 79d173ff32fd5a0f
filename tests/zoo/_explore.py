import jax, jinit, time, jax.numpy as jnp, sys
from tests.zoo.models import cases
import jinit._src.diagnostics.stats as S
c = cases()["transformer_nnx"]
orig = S._stats
def run(label):
    f = jax.jit(lambda p, b: jinit.layer_statistics(c.model, p, b))
    t=time.perf_counter(); low = f.lower(c.variables, c.x); t1=time.perf_counter()
    comp = low.compile(); t2=time.perf_counter()
    print(label, "trace", round(t1-t,2), "compile", round(t2-t1,2), len(low.as_text().splitlines()), flush=True)
S._stats = lambda arrays, kind: {f"{n}/norm": jnp.float32(0) for n in arrays} 
run("none")
for k in ["act", "grad", "param"]:
    S._stats = lambda arrays, kind, k=k: orig(arrays, kind) if kind == k else {f"{n}/norm": jnp.float32(0) for n in arrays}
    run(k)
S._stats = orig
run("all")
