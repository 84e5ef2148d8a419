"""The loaders' batches through grain: read ahead on threads or in worker processes.

Every jaxdl loader defines batch `b` of epoch `e` as a pure function of (seed, e, b)
(`jaxdl.data.loader`); this module only decides where that function runs. The pipeline
is `grain.MapDataset.range(start, stop).map(make_batch)`, then

- `workers=0` (default): `to_iter_dataset(ReadOptions(num_threads=threads,
  prefetch_buffer_size=prefetch))`: `threads` threads build the next `prefetch` batches
  while the device trains on this one (what hides the reads of an array_record dataset);
  `threads=0` builds each batch in the training thread when it is asked for.
- `workers=N`: grain worker processes (`mp_prefetch`), for host work heavy enough to
  beat pickling each batch back (decoding, tokenising).

grain keeps the order, so the batches, and a resumed run's position (the step alone),
are the same whichever is chosen.
"""

from collections.abc import Callable, Iterator

import grain


def batches(make_batch: Callable[[int], dict], start: int, stop: int, *, threads: int = 1,
            prefetch: int = 2, workers: int = 0) -> Iterator[dict]:
    """`make_batch(b)` for b in [start, stop), in order, read ahead as the module says."""
    if stop <= start:
        return iter(())
    ds = grain.MapDataset.range(start, stop).map(make_batch)
    if workers:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; jaxdl has none
            flags.FLAGS.mark_as_parsed()
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                         per_worker_buffer_size=prefetch))
    else:
        it = ds.to_iter_dataset(grain.ReadOptions(
            num_threads=threads, prefetch_buffer_size=max(prefetch, threads) if threads else 0))
    return iter(it)
