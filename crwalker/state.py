"""Dialogue-state features ``s_t`` for intent selection (not in the paper; ``ModelConfig.intent_state``).

Eq. 4 predicts the system intent from ``u_t`` alone, and ``u_t`` (an LSTM over the last ``l_max``
exchanges) cannot tell how far the dialogue has progressed or what the system already did. ``s_t``
adds that, from the input side only (earlier turns and the current user utterance; never the gold turn):

====  ============================================================  =========
dim   feature                                                        scale
====  ============================================================  =========
0     system turns before this one                                   / 10
1     ``log(1 + index of this turn in the dialogue)``
2-4   earlier system turns with intent recommend / query / chat      / 3
5     the user utterance ``x_t`` contains ``?``                       0/1
6     ``log(1 + words of x_t)``
7     ``x_t`` is empty (the system speaks twice in a row)            0/1
8     entities mentioned before the turn (portrait input)            / 5
====  ============================================================  =========

The earlier intents are those of the earlier system turns' dialog acts: the labels' in training and
evaluation (they are a function of the earlier system text, which is part of the input), the engine's
own acts in the chat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from crwalker.candidates import INTENT_INDEX

STATE_DIM = 9


def dialogue_state(
    n_system_turns: int,
    turn_index: int,
    earlier_intents: Sequence[str],
    user_text: str,
    n_context_entities: int,
) -> list[float]:
    """``s_t`` of the module docstring.

    Args:
        n_system_turns: system turns before this one.
        turn_index: index of the system turn to produce in the dialogue's turn list.
        earlier_intents: intents (``"recommend" | "query" | "chat"``) of earlier system turns.
        user_text: the user utterance ``x_t`` this system turn answers (``""`` if none).
        n_context_entities: entities mentioned before the turn.

    Returns:
        :data:`STATE_DIM` floats.
    """
    counts = [0, 0, 0]
    for it in earlier_intents:
        counts[INTENT_INDEX[it]] += 1
    text = user_text.strip()
    return [
        n_system_turns / 10.0,
        math.log1p(max(turn_index, 0)),
        *[c / 3.0 for c in counts],
        float("?" in text),
        math.log1p(len(text.split())),
        float(text == ""),
        n_context_entities / 5.0,
    ]
