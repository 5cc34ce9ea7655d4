"""The localizer's states and the one rule that moves between them: (state, event) -> state.

What a consumer may do with an estimate depends on the state: only TRACKING publishes a fix;
every other state says why not (waiting for an initial fix, too uncertain, searching the
map, outside the map). The rule is a pure function so it can be read in one place and
tested as a table; the localizer only decides which event a frame is (localize.localizer).
"""
from __future__ import annotations

from enum import Enum


class LocalizerState(str, Enum):
    INITIALIZING = "INITIALIZING"  # no initial fix yet: nothing to propagate
    TRACKING = "TRACKING"  # small uncertainty, recent evidence agrees: the fix is valid
    DEGRADED = "DEGRADED"  # too uncertain to publish, or evidence disagrees: search widened, no fix
    LOST = "LOST"  # the track's own uncertainty says it no longer knows: no fix
    RELOCALIZING = "RELOCALIZING"  # sweeping the reachable area, confirming candidates
    OFF_MAP = "OFF_MAP"  # predicted position outside the map coverage: no fix

    def __str__(self) -> str:  # "TRACKING", not "LocalizerState.TRACKING", in logs and CSV
        return self.value


class Event(str, Enum):
    """What a frame (or a command) tells the state machine."""

    SEEDED = "seeded"  # an initial fix was applied
    SEEDED_AS_PRIOR = "seeded_as_prior"  # a fix that is only a prior to search around
    CONFIDENT = "confident"  # the track is certain enough to publish and recent evidence agrees
    UNCERTAIN = "uncertain"  # too uncertain to publish, evidence too old, or disagreeing
    TOO_UNCERTAIN = "too_uncertain"  # the uncertainty exceeds what a search around the track can cover
    RELOCALIZE = "relocalize"  # search the map (operator request, or a lost track with a model)
    RELOCALIZED = "relocalized"  # a relocalization candidate was confirmed
    LEFT_MAP = "left_map"  # the prediction left the map
    BACK_ON_MAP = "back_on_map"  # the prediction is over the map again


S, E = LocalizerState, Event

#: (state, event) -> new state; pairs not listed leave the state as it is
TRANSITIONS: dict[tuple[LocalizerState, Event], LocalizerState] = {
    (S.TRACKING, E.UNCERTAIN): S.DEGRADED,
    (S.DEGRADED, E.CONFIDENT): S.TRACKING,
    (S.RELOCALIZING, E.RELOCALIZED): S.TRACKING,
    (S.OFF_MAP, E.BACK_ON_MAP): S.DEGRADED,  # a fix needs fresh evidence first
    **{(s, E.TOO_UNCERTAIN): S.LOST for s in (S.TRACKING, S.DEGRADED)},
    # a search starts from any state with a track (or the memory of one) that is not searching already
    **{(s, E.RELOCALIZE): S.RELOCALIZING for s in (S.LOST, S.TRACKING, S.DEGRADED, S.OFF_MAP)},
}
#: events that apply from any state
ANY_STATE: dict[Event, LocalizerState] = {
    E.SEEDED: S.TRACKING,
    E.SEEDED_AS_PRIOR: S.RELOCALIZING,
}
#: states the prediction can leave the map from (a search in progress keeps searching)
CAN_LEAVE_MAP = (S.TRACKING, S.DEGRADED, S.LOST)


def next_state(state: LocalizerState, event: Event) -> LocalizerState:
    """The transition rule of the module docstring."""
    if event in ANY_STATE:
        return ANY_STATE[event]
    if event == E.LEFT_MAP:
        return S.OFF_MAP if state in CAN_LEAVE_MAP or state == S.OFF_MAP else state
    return TRANSITIONS.get((state, event), state)
