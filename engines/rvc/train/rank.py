"""One DDP rank under torchrun: ``python -m engines.rvc.train.rank <job.json>``.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; the job file is the
launcher's ``TrainJob``. Everything goes back to the launcher as ``@voicelab {json}`` lines: log,
progress and saves from global rank 0, then this node's summary (from its local rank 0), or the
error that stopped a rank.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(argv: list[str] | None = None) -> int:
    from engines.core.errors import Cancelled, VoiceLabError
    from engines.rvc.train.loop import LineChannel, TrainJob, train_process

    args = sys.argv[1:] if argv is None else argv
    with open(args[0], encoding="utf-8") as fh:
        job = TrainJob(**json.load(fh))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    channel = LineChannel()
    try:
        summary = train_process(rank, local_rank, job, channel)
    except Cancelled:  # asked on this node or (through the all-reduce) on another
        channel.send(cancelled=rank)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to the launcher with its message
        message = exc.message if isinstance(exc, VoiceLabError) else f"{type(exc).__name__}: {exc}"
        channel.send(error={"rank": rank, "message": message, "hint": getattr(exc, "hint", "") or "",
                            "traceback": traceback.format_exc()})
        return 1
    if local_rank == 0:
        channel.send(result=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
