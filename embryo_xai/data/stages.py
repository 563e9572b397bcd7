"""The 16 development phases (events) and stages of the embryo data set, in label order."""

PHASES: tuple[str, ...] = (
    "tPB2", "tPNa", "tPNf", "t2", "t3", "t4", "t5", "t6",
    "t7", "t8", "t9+", "tM", "tSB", "tB", "tEB", "tHB",
)
# A stage is named after the event that opens it: tPB2 -> sPB2.
STAGES: tuple[str, ...] = tuple("s" + phase[1:] for phase in PHASES)
NUM_CLASSES: int = len(PHASES)
PHASE_TO_LABEL: dict[str, int] = {phase: i for i, phase in enumerate(PHASES)}
STAGE_TO_LABEL: dict[str, int] = {stage: i for i, stage in enumerate(STAGES)}
