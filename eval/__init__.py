"""Evaluation: datasets, ir-measures metrics, run comparison.

``lsr.eval`` is the ``eval/`` directory of the repository. Typical use::

    from lsr.eval import load_dataset, evaluate, compare
    ds = load_dataset("msmarco-passage/trec-dl-2019/judged")   # or beir/scifact/test, a BEIR dir, ...
    ev = evaluate("run.trec", ds)              # the dataset's default metrics
    ev = evaluate(results, ds, ["nDCG@10", "R(rel=2)@1000"])
    print(ev.aggregate, ev.per_query["19335"])
    cmp = compare("new.trec", "baseline.trec", ds, test="both")

Datasets (:func:`load_dataset`): an ir_datasets id (``irds:`` prefix
optional), a local BEIR-layout or flat directory (``DIR[:SPLIT]``) or a qrels
file; :meth:`Dataset.from_files` for separate files. Default metrics per
family (:data:`DEFAULT_METRICS`): MS MARCO dev ``RR@10, R@1000``; TREC DL
(passage) ``nDCG@10, R(rel=2)@1000``; BEIR ``nDCG@10, R@100``; anything else
``nDCG@10, RR@10, R@1000``. Any ir-measures measure string is accepted
(``AP(rel=2)``, ``P@10``, ...), and trec_eval names (``ndcg_cut_10``) too.

Tie rule (equal scores)
-----------------------
lsr ranks equal scores by ascending internal doc id (collection order), and
:class:`lsr.Results` carries that order as explicit ranks; quantised impacts
make ties common. trec_eval and pytrec_eval(-terrier) instead re-sort a run by
score and break ties by doc id *descending* (``strcmp`` on the ids, so ``"9"``
before ``"10"``), while ir-measures' own ``RR@k`` provider (the MS MARCO
script) breaks them by doc id *ascending*: on a run with ties, ``RR@10`` and
``nDCG@10`` from ir-measures do not even see the same ranking. So
:func:`evaluate` never hands raw scores to ir-measures: it replaces each
query's scores by ``n, n-1, ..., 1`` in the order being evaluated, which
every provider then reproduces exactly. The order is, with the default
``ties="rank"``, the run's rank order: the engine's order for a search just
made; for a run file, :meth:`lsr.Results.read_trec`'s order (score
descending, equal scores in file order; the rank column is not used), which
is the writer's rank order for lsr's own files. ``ties="trec_eval"`` orders
by score descending then doc id descending, reproducing trec_eval's numbers
for runs with ties. On runs without ties both give the raw-score results.

Run / qrels mismatches (trec_eval conventions)
----------------------------------------------
* The evaluated queries are the qrels' queries. A judged query with no hits in
  the run scores 0 for every metric and counts in the mean (trec_eval ``-c``,
  and the MS MARCO script, which divides by all judged queries); a warning
  (:class:`EvalWarning`) names them.
* Run queries that are not in the qrels are not evaluated, as in trec_eval;
  a warning names them (``strict=True`` / ``--strict`` makes it an error).
* Errors (:class:`~lsr.errors.InputError`, one line): an empty run; a run
  that shares no query id with the qrels (wrong dataset); an unknown dataset
  id or path (with the closest ir_datasets ids); a dataset without qrels
  (naming its subsets that have them); a doc listed twice for one query;
  unknown metrics. A run none of whose documents is judged gets a warning
  (document ids from another collection?).
"""

from .compare import TESTS, Comparison, MetricComparison, compare
from .datasets import (DEFAULT_METRICS, Dataset, IrdsDataset, LocalDataset, dataset_family,
                       load_dataset, read_qrels)
from .metrics import TIE_RULES, EvalWarning, Evaluation, evaluate, parse_metrics, split_metric_list
from .report import format_comparison, format_evaluations, format_per_query

__all__ = [
    "load_dataset", "Dataset", "IrdsDataset", "LocalDataset", "read_qrels", "dataset_family",
    "DEFAULT_METRICS", "evaluate", "Evaluation", "EvalWarning", "parse_metrics",
    "split_metric_list", "TIE_RULES", "compare", "Comparison", "MetricComparison", "TESTS",
    "format_evaluations", "format_per_query", "format_comparison",
]
