"""Online CR-Walker: a shared :class:`Engine` and per-conversation :class:`Session` objects.

```python
from crwalker.engine import Engine, WalkControls
engine = Engine.load(bundle="release/bundle", kg="data/kg")
s = engine.new_session()
for ev in s.respond("any scary movies like Alien?", WalkControls(threshold=0.5, width=5, max_leaves=10)):
    ...  # ev.kind: "reasoning" | "token" | "done"
```

Modules: :mod:`.engine` (models, KG, one turn's reasoning), :mod:`.session` (Algorithm 1 per turn, state),
:mod:`.feedback` (negative-feedback rules), :mod:`.types` (dataclasses), :mod:`.cards` (movie cards,
input clean-up), :mod:`.bundle` (release bundle build/verify/load), :mod:`.bench` (chat latency benchmark),
:mod:`.guided` (guided mode: a trained Movie-domain policy asks or recommends, ``WalkControls(guided=True)``).
"""

from .engine import Engine
from .session import Session
from .types import MovieCard, TreeNode, TurnEvent, TurnResult, WalkControls

__all__ = ["Engine", "MovieCard", "Session", "TreeNode", "TurnEvent", "TurnResult", "WalkControls"]
