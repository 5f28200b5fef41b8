"""Index directories as Hugging Face hub dataset repositories (``lsr[hub]``, ``huggingface_hub``).

:func:`open_pretrained` opens a local index directory as it is, or downloads a
hub dataset repository with ``huggingface_hub.snapshot_download`` (cached as
usual, so it works offline once cached, and with ``HF_HUB_OFFLINE=1``) and
opens the snapshot with :meth:`lsr.Index.open` (checksums verified as open
does). :func:`push_index` writes a dataset card (``README.md``) into the index
directory and uploads the directory's index files and the card as one commit
(``HfApi.create_repo(repo_type="dataset", exist_ok=True)`` +
``upload_folder``). :func:`upload_files` and :func:`dataset_card` are the pure
parts: which files go up, and the card's text.

``huggingface_hub`` is imported only here, when these functions run. Every
failure is one :class:`HubError` line (repository or revision not found,
offline with nothing cached, the extra not installed), or the
:class:`~lsr.errors.IndexFormatError` of a repository that is not an lsr index.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import TYPE_CHECKING, Any

from lsr.errors import IndexFormatError, InputError, LsrError

from . import format as fmt

if TYPE_CHECKING:
    from .index import Index

CARD = "README.md"
CARD_MARK = "library_name: lsr"   # a README.md holding this line was written by lsr and may be rewritten
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class HubError(LsrError):
    """The hub could not give (or take) an index: no such repository or revision, offline with nothing
    cached, no network, no ``huggingface_hub``."""


def looks_like_repo_id(spec: str) -> bool:
    """Whether ``spec`` is syntactically a hub repository id ``owner/name``."""
    return bool(_REPO_ID.match(spec)) and ".." not in spec


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("index repositories on the Hugging Face hub need huggingface_hub: "
                       "pip install 'lsr[hub]'") from None
    return huggingface_hub


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(e).__name__)


def open_pretrained(repo_id_or_path: str | os.PathLike, revision: str | None = None, verify: bool = True,
                    cache_dir: str | os.PathLike | None = None, token: str | bool | None = None) -> "Index":
    """Open a local index directory, or the index in a hub dataset repository ``owner/name``
    (downloaded into the Hugging Face cache, or taken from it offline)."""
    from .index import Index

    spec = os.fspath(repo_id_or_path)
    if os.path.exists(spec):
        if revision is not None:
            raise InputError(f"{spec} is a local directory: a revision applies to hub repositories only")
        return Index.open(spec, verify=verify)
    if not looks_like_repo_id(spec):
        raise IndexFormatError(f"index {spec} does not exist"
                               + ("" if "/" in spec or os.sep in spec else ", and it is not a hub dataset id "
                                  "(owner/name)"))
    try:
        snapshot = download_index(spec, revision=revision, cache_dir=cache_dir, token=token)
    except HubError as e:
        raise HubError(f"{e} (there is no local directory {spec} either)") from None
    if not os.path.isfile(os.path.join(snapshot, fmt.MANIFEST)):
        raise IndexFormatError(f"hub dataset {spec}{'@' + revision if revision else ''} is not an lsr index "
                               f"(no {fmt.MANIFEST} in the repository)")
    return Index.open(snapshot, verify=verify)


def download_index(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                   token: str | bool | None = None) -> str:
    """The local snapshot directory of a hub dataset repository (``snapshot_download``)."""
    hub = _hub()
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"{repo_id}@{revision}" if revision else repo_id
    try:
        return hub.snapshot_download(repo_id, repo_type="dataset", revision=revision,
                                     cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
                                     token=token)
    except GatedRepoError:
        raise HubError(f"hub dataset {label} is gated: accept its conditions on the hub and pass a token") from None
    except RepositoryNotFoundError:
        raise HubError(f"hub dataset {label} not found (or private: log in or pass a token)") from None
    except RevisionNotFoundError:
        raise HubError(f"hub dataset {repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        why = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached")
        raise HubError(f"hub dataset {label} is not in the Hugging Face cache and {why}; download it where "
                       "there is network, or give the index's local directory") from None
    except (OSError, ValueError) as e:
        raise HubError(f"cannot download hub dataset {label}: {_one_line(e)}") from None


# --------------------------------------------------------------------------- pushing
def upload_files(index: "Index") -> list[str]:
    """The files of the index directory that make the index (what :meth:`Index.open` reads), sorted:
    ``manifest.json``, the arrays, the other listed files and the document store."""
    m = index.manifest
    names = {fmt.MANIFEST}
    names.update(name + ".npy" for name in m["arrays"])
    names.update(m["files"])
    if m.get("docstore"):
        names.update(m["docstore"]["files"])
    return sorted(names)


def _fmt_count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def dataset_card(index: "Index", repo_id: str) -> str:
    """A dataset card (``README.md``) for the index: YAML metadata (``library_name: lsr``, tags) and the
    counts, impacts and encoder recorded in the manifest, with how to open it."""
    m = index.manifest
    counts = m["counts"]
    q = m.get("quantization") or {}
    enc = m.get("encoder") or None
    cfg = enc.get("config") if isinstance(enc, dict) and isinstance(enc.get("config"), dict) else {}
    enc_name = cfg.get("name")
    models = []
    for side in ("doc", "query"):
        s = cfg.get(side) if isinstance(cfg.get(side), dict) else {}
        if s.get("model") and s["model"] not in models:
            models.append(str(s["model"]))
    size_category = ("n<1K" if index.num_documents < 1_000 else "1K<n<10K" if index.num_documents < 10_000
                     else "10K<n<100K" if index.num_documents < 100_000 else "100K<n<1M"
                     if index.num_documents < 1_000_000 else "1M<n<10M" if index.num_documents < 10_000_000
                     else "n>10M")
    lines = ["---", CARD_MARK, "tags:", "- lsr", "- learned-sparse-retrieval", "- sparse-retrieval",
             "- inverted-index", f"size_categories:\n- {size_category}", "---", "",
             f"# {repo_id}", "",
             "An inverted index of learned sparse vectors written by [lsr](https://pypi.org/project/lsr/) "
             f"(format `{m.get('format')}` version {m.get('format_version')}).", "",
             "| | |", "|---|---|",
             f"| documents | {_fmt_count(counts.get('documents'))} |",
             f"| terms | {_fmt_count(counts.get('terms'))} |",
             f"| postings | {_fmt_count(counts.get('postings'))} |",
             f"| impacts | {m.get('impact_dtype')}"
             + (f", {q.get('method')} quantization, {q.get('bits')} bits, scale {q.get('scale')}"
                if m.get("impact_dtype") != "float32" and q else "") + " |",
             f"| document text stored | {'yes' if m.get('docstore') else 'no'} |",
             f"| encoder | {enc_name or 'none recorded (built from term weights)'} |"]
    if models:
        lines.append(f"| encoder checkpoints | {', '.join(models)} |")
    lines.append(f"| written by | {m.get('created_by', 'lsr')} |")
    lines += ["", "## Use", "", "```python", "import lsr", "",
              f'index = lsr.Index.from_pretrained("{repo_id}")', "```", "",
              "The files are the index directory as lsr writes it; `lsr info` and `lsr search -i` read a "
              "downloaded copy (`huggingface-cli download --repo-type dataset " + repo_id + " --local-dir DIR`).",
              ""]
    return "\n".join(lines)


def write_card(index: "Index", repo_id: str) -> str:
    """Write the dataset card into the index directory (atomically), unless a ``README.md`` that lsr did
    not write is there (then it is kept). Returns the card's path."""
    path = os.path.join(index.path, CARD)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                own = CARD_MARK in f.read(4096)
        except (OSError, UnicodeDecodeError):
            own = False
        if not own:
            return path
    try:
        fd, tmp = tempfile.mkstemp(prefix=CARD + ".", suffix=".tmp", dir=index.path)
    except OSError as e:
        raise HubError(f"cannot write the dataset card into {index.path} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dataset_card(index, repo_id))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def push_index(index: "Index", repo_id: str, private: bool | None = None, token: str | bool | None = None,
               commit_message: str | None = None, revision: str | None = None):
    """Create (if needed) the dataset repository ``repo_id`` and upload the index and its card as one
    commit; files of an earlier upload that the index no longer has are deleted. Returns the commit info."""
    if not isinstance(repo_id, str) or not looks_like_repo_id(repo_id):
        raise HubError(f"hub repository id must be owner/name, got {repo_id!r}")
    hub = _hub()
    files = upload_files(index)
    write_card(index, repo_id)
    api = hub.HfApi(token=token)
    message = commit_message or f"lsr index: {index.num_documents:,} documents, {index.num_postings:,} postings"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=index.path,
                                 allow_patterns=files + [CARD], delete_patterns=["*"],
                                 commit_message=message, revision=revision)
    except LsrError:
        raise
    except Exception as e:   # network, authentication, permissions: one line
        raise HubError(f"cannot push the index to hub dataset {repo_id}: {_one_line(e)}") from None


__all__ = ["CARD", "HubError", "dataset_card", "download_index", "looks_like_repo_id", "open_pretrained",
           "push_index", "upload_files", "write_card"]
