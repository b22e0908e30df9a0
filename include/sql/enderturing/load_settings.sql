-- The load's statements are few and large: JIT compilation costs more than it saves on them.
SET LOCAL jit = off
