"""Cluster requests (memory, runtime) of each workflow rule, from the matrix's dimensions.

Each rule's cost was measured with the workflow itself (``snakemake --cores 2``, TSV
matrices, 60,000 genes × 1,000 samples; ``bench/RESULTS.md``, "The workflow itself") and
checked against the 60,000 × 17,000 Parquet run: peak memory per MB of the rule's
largest input matrix held dense as float64, and seconds per million matrix cells. A
request is that measurement times a stated margin:

* ``mem_mb = max(1000, 500 + 1.5 × peak_per_dense_mb × dense_mb)``, doubled on each retry;
* ``runtime = 5 + 3 × measured seconds / 60`` minutes (rounded up), doubled on each retry.

The dimensions come from the file's metadata where it has any (``.h5ad`` through h5py,
Parquet footer) and from the first lines and the size of a text table otherwise. No
function here raises on an unreadable file (truncated or non-gzip ``.gz``, a directory,
a missing path): it returns ``None`` and the caller falls back, so the importer's own
message is what the user sees.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

#: Memory margin over the measured peak, the interpreter allowance and the floor (MB).
MEM_MARGIN = 1.5
MEM_BASE_MB = 500.0
MEM_FLOOR_MB = 1000
#: Runtime margin over the measured time, and the floor added to it (minutes).
RUNTIME_MARGIN = 3.0
RUNTIME_FLOOR_MIN = 5.0


@dataclass(frozen=True)
class RuleCost:
    """Measured cost of one rule per unit of its largest input matrix.

    Attributes
    ----------
    mem_per_dense
        Peak RSS above an idle interpreter (140 MiB) per MB of the input held dense.
    seconds_per_mcell
        Wall-clock seconds per million genes × samples cells of the input.
    seconds_per_gene2_sample
        For costs quadratic in the genes (non-parametric ComBat): seconds per
        genes² × samples.
    """

    mem_per_dense: float
    seconds_per_mcell: float
    seconds_per_gene2_sample: float = 0.0


#: Per-rule costs. From the workflow run at 60,000 × 1,000 (bench/RESULTS.md): import
#: 7.6 s and 878 MiB on the raw matrix (458 MiB dense, 60 M cells); filter 6.7 s, 1,011
#: MiB; the rest read the filtered matrix (33,858 genes: 258 MiB dense, 34 M cells):
#: size factors 4.5 s, 657 MiB; normalized values 25.5 s, 729 MiB; TPM 10.7 s, 613 MiB;
#: ComBat 17.0 s, 927 MiB; QC stages up to 17.0 s and 1,001 MiB; QC summary (raw matrix)
#: 9.3 s, 883 MiB. ComBat-seq: 9.6 s and 587 MiB at 20,000 × 200 (bench, batch table).
#: Non-parametric ComBat is quadratic in the genes: 10.3 s at 20,000 × 200.
#: write_h5ad was not measured: it reads up to six matrices one at a time, costed as six
#: imports (0.8 s per million cells) holding two dense copies.
RULE_COSTS: dict[str, RuleCost] = {
    "import_counts": RuleCost(1.61, 0.127),
    "filter_counts": RuleCost(1.90, 0.112),
    "size_factors": RuleCost(2.00, 0.132),
    # size_factor_type scran, measured roughly on this machine: scran's pooling alone on
    # simulated 19,777 x 200 counts (default pool sizes) took 4.3 s, peak 471 MiB with the
    # interpreter and the simulated data: 1.1 s per million cells (not measured at 1,000+
    # samples, where the pools and the least-squares system grow).
    "size_factors_scran": RuleCost(2.00, 1.1),
    "normalized_values": RuleCost(2.28, 0.75),
    # Not measured: one elementwise pass over the filtered counts writing one matrix, so
    # normalized_values' cost (the same pass writing three) bounds it.
    "transform_norm_transform": RuleCost(2.28, 0.75),
    # VST and rlog: measured on the core call at 20,000 × 100 simulated NB counts on the
    # development machine (2 shared cores): vst with nsub 1000 0.45 s, 202 MiB; the full
    # VST (transforms.vst.nsub: null) 6.7 s, 507 MiB; rlog 6.7 s, 507 MiB. The file I/O
    # of norm_transform is added to the times.
    "transform_vst": RuleCost(4.0, 1.0),
    "transform_vst_full": RuleCost(23.0, 4.2),
    "transform_rlog": RuleCost(23.0, 4.2),
    "tpm": RuleCost(1.83, 0.315),
    "write_h5ad": RuleCost(3.0, 0.8),
    "batch_correction_combat": RuleCost(3.05, 0.50),
    "batch_correction_combat_nonparametric": RuleCost(3.05, 0.50, 1.29e-10),
    "batch_correction_combat_seq": RuleCost(4.0, 2.4),
    # removeBatchEffect: the core is 0.03 s and 217 MiB at 20,000 × 100 (same machine);
    # the rule is reading and writing, sized as ComBat's I/O.
    "batch_correction_remove_batch_effect": RuleCost(4.8, 0.5),
    # Measured roughly on this machine (2 shared cores, 2 threads): combat_ref on a
    # simulated 19,777 x 200 matrix (4 batches, 2 conditions) took 10.8 s and peaked at
    # 698 MiB, of which about 470 MiB were the interpreter and the simulated data.
    "batch_correction_combat_ref": RuleCost(8.0, 2.7),
    # gPCA adds one centred copy of the genes it uses (every gene by default, as
    # gPCA.batchdetect): one dense matrix more than the 3.34 measured before it was added.
    # Its 200 permutations took 0.3 s at 20,000 x 200 and 1.9 s at 20,000 x 1,000 here.
    "qc_stage": RuleCost(4.34, 0.50),
    "qc_summary": RuleCost(1.62, 0.155),
    # Not measured: the panel reads the three stage matrices once (a QC stage's cost bounds
    # it); gene_symbols reads the raw counts' gene IDs and the annotation (an import).
    "qc_genes_of_interest": RuleCost(3.34, 0.50),
    "gene_symbols": RuleCost(1.61, 0.127),
    # Measured in the workflow at 60,000 × 1,000 (bench/RESULTS.md, workflow-vs-R): the
    # TSV export of a 33,858 × 1,000 float64 matrix (258 MiB dense, 34 M cells) took
    # 4.7–6.0 s and peaked at 681–755 MiB, most of it the memory-mapped hand-off file's
    # pages (which a cgroup limit counts): 0.18 s per million cells, 2.3× dense above
    # an idle interpreter.
    "export_matrix": RuleCost(2.3, 0.18),
    # Sharded mode (docs/sharding.md), not measured yet: each rule is costed as the
    # in-memory rule doing the same work per cell, on the cells the job holds (a shard:
    # all genes × samples_per_shard; a gather: one vector per gene and shard; assembling:
    # genes_per_block × all samples), see rules/resources.smk: shard_shape.
    "sharded_source": RuleCost(1.61, 0.127),
    "sharded_scatter": RuleCost(2.00, 0.132),
    "sharded_gather": RuleCost(2.00, 0.132),
    "sharded_gather_combat": RuleCost(3.05, 0.50),
    "sharded_gather_combat_nonparametric": RuleCost(3.05, 0.50, 1.29e-10),
    "sharded_values": RuleCost(2.28, 0.75),
    "sharded_combat": RuleCost(3.05, 0.50),
    "sharded_assemble": RuleCost(1.0, 0.2),
    "sharded_qc": RuleCost(2.0, 0.2),
    "sharded_seq_block": RuleCost(4.0, 2.4),
}


def dense_mb(genes: int, samples: int) -> float:
    """MB of a genes × samples float64 matrix."""
    return genes * samples * 8 / 1e6


def mem_mb(cost: RuleCost, genes: int, samples: int, attempt: int = 1) -> int:
    """Memory to request (MB) for a rule on a genes × samples input.

    Parameters
    ----------
    cost
        The rule's measured cost.
    genes, samples
        The dimensions of the rule's largest input matrix.
    attempt
        Snakemake's attempt number: each retry doubles the request.
    """
    need = MEM_BASE_MB + MEM_MARGIN * cost.mem_per_dense * dense_mb(genes, samples)
    return math.ceil(max(MEM_FLOOR_MB, need)) * max(attempt, 1)


def runtime_min(cost: RuleCost, genes: int, samples: int, attempt: int = 1) -> int:
    """Minutes to request for a rule on a genes × samples input (doubled on each retry)."""
    seconds = cost.seconds_per_mcell * genes * samples / 1e6
    seconds += cost.seconds_per_gene2_sample * float(genes) ** 2 * samples
    return math.ceil(RUNTIME_FLOOR_MIN + RUNTIME_MARGIN * seconds / 60) * max(attempt, 1)


def _text_size(path: Path) -> int:
    """Uncompressed size of a text file; for gzip, from its trailer (ISIZE, mod 2**32)."""
    size = path.stat().st_size
    if not path.name.endswith(".gz"):
        return size
    with open(path, "rb") as handle:
        handle.seek(max(size - 4, 0))
        (isize,) = struct.unpack("<I", handle.read(4).rjust(4, b"\0"))
    # ISIZE wraps at 4 GiB: take the smallest candidate at least twice the packed size,
    # since count tables compress 3 to 8 times.
    while isize < 2 * size:
        isize += 1 << 32
    return isize


def text_table_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """Rows × data columns of a TSV/CSV (``.gz`` too), estimated from its first lines.

    Returns ``None`` when the file cannot be read as text (missing, a directory, a
    truncated or non-gzip ``.gz``, empty).
    """
    path = Path(path)
    try:
        if not path.is_file():
            return None
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            lines = [handle.readline(1 << 26) for _ in range(21)]
        body = [line for line in lines[1:] if line.strip()]
        if not body:
            return None
        header = lines[0]
        fields = max(header.count(b"\t"), header.count(b","))
        rows = _text_size(path) / (sum(map(len, body)) / len(body))
        return math.ceil(rows), max(fields, 1)
    except (OSError, EOFError, ValueError, struct.error):
        return None


def h5ad_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """Genes × samples of an AnnData file, from its metadata (h5py; nothing is loaded).

    AnnData stores samples × genes; ``X`` is a dataset or a sparse group whose ``shape``
    attribute gives the dimensions.
    """
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            for key in ("X", *(f"layers/{name}" for name in handle.get("layers", {}))):
                if key not in handle:
                    continue
                node = handle[key]
                shape = node.shape if isinstance(node, h5py.Dataset) else node.attrs.get("shape")
                if shape is not None and len(shape) == 2:
                    return int(shape[1]), int(shape[0])
    except (OSError, ValueError, KeyError, ImportError):
        return None
    return None


def parquet_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """Genes × samples of a matrix written as Parquet (first column the gene IDs)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
    except (OSError, ValueError, ImportError):
        return None
    return int(meta.num_rows), max(int(meta.num_columns) - 1, 1)


def arrow_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """Genes × samples of a matrix written as Arrow IPC (first column the gene IDs)."""
    try:
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return rows, max(len(reader.schema.names) - 1, 1)
    except (OSError, ValueError, ImportError):  # ArrowInvalid is a ValueError
        return None


def matrix_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """Genes × samples of a matrix file in any format the workflow reads, or ``None``."""
    name = str(path)
    if name.endswith(".h5ad"):
        return h5ad_shape(path)
    if name.endswith(".parquet"):
        return parquet_shape(path)
    if name.endswith(".arrow"):
        return arrow_shape(path)
    return text_table_shape(path)
