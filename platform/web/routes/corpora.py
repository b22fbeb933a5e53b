"""Corpora: the list (create one there), a corpus's documents, one document's chunks and source, and
what hybrid retrieval returns for a query."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from corral.core.db import Chunk, Document, session_scope
from corral.core.errors import InvalidInputError, NotFoundError
from corral.core.services import get_corpus, list_corpora, list_jobs
from corral.core.services.corpora import ensure_corpus
from corral.core.services.documents import (
    document_images,
    document_lines,
    get_document,
    get_document_image,
    list_documents,
    status_counts,
)
from corral.platform.api.routes.documents import image_response
from corral.platform.composition import get_searcher
from corral.platform.web.images import box_style, image_path
from corral.platform.web.pages import Csrf, IngestViewer, PageRoute, ReadViewer, is_htmx, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 50
MAX_QUERY = 500
MAX_LINES = 20_000  # a page of source a browser still renders quickly; longer documents are cut
MAX_IMAGES = 200  # images shown on a document's page (a scan of a long book has one a page)
MAX_BOXES = 200  # boxes drawn over one image


@router.get("/corpora")
def corpora(request: Request, viewer: ReadViewer) -> Response:
    with session_scope() as db:
        rows = []
        for corpus in list_corpora(db, viewer.principal.workspace):
            last = list_jobs(db, corpus_id=corpus.id, limit=1)
            rows.append({"name": corpus.name, "documents": corpus.document_count,
                         "tokens": corpus.token_count, "created_at": corpus.created_at,
                         "job": last[0] if last else None})
        return render(request, "corpora.html", corpora=rows)


@router.post("/corpora", dependencies=[Csrf])
def create_corpus(request: Request, viewer: IngestViewer,
                  name: Annotated[str, Form(max_length=200)] = "") -> Response:
    with session_scope() as db:
        corpus, created = ensure_corpus(db, name.strip(), viewer.principal.workspace)
        target = f"/corpora/{corpus.name}/sources" if created else f"/corpora/{corpus.name}"
    return redirect(request, target)


@router.get("/corpora/{name}")
def corpus(request: Request, name: str, viewer: ReadViewer,
           state: Annotated[str | None, Query(max_length=16)] = None,
           path: Annotated[str | None, Query(max_length=200)] = None,
           page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    with session_scope() as db:
        found = get_corpus(db, name, viewer.principal.workspace)
        docs = list_documents(db, found, status=state, path_contains=path, limit=PAGE,
                              offset=(page - 1) * PAGE)
        counts = status_counts(db, found)
        jobs = list_jobs(db, corpus_id=found.id, limit=5)
        return render(request, "corpus.html", corpus=found, docs=docs.documents, total=docs.total,
                      counts=counts, jobs=jobs, state=state or "", path=path or "", page=page,
                      pages=max(1, -(-docs.total // PAGE)))


# Registered before the document page, whose path would take "/images/<ref>" in.
@router.get("/corpora/{name}/documents/{path:path}/images/{ref}")
def document_image(request: Request, name: str, path: str, ref: str, viewer: ReadViewer) -> Response:
    """The stored image ``ref`` of the document at ``path`` (a figure, a scanned page, the image file).
    A document whose own path ends in ``/images/<name>`` is shown as its page: no document can be
    both a file at ``path`` and a folder holding ``images/<name>``, so at most one of the two exists."""
    whole = f"{path}/images/{ref}"
    with session_scope() as db:
        found = get_corpus(db, name, viewer.principal.workspace)
        try:
            image = get_document_image(db, found, path, ref)
        except NotFoundError:
            if db.scalar(select(Document.id).where(Document.corpus_id == found.id,
                                                   Document.path == whole)) is None:
                raise
        else:
            return image_response(image.mime, image.data)
    return document(request, name, whole, viewer)


@router.get("/corpora/{name}/documents/{path:path}")
def document(request: Request, name: str, path: str, viewer: ReadViewer) -> Response:
    """A document's chunks (symbol, kind, line range) and its source with line numbers; a fragment
    ``#L{start}-L{end}`` (citations link so) highlights those lines and scrolls to them. Its images
    (figures, scanned pages) are shown with the boxes of the text read from each."""
    with session_scope() as db:
        found = get_corpus(db, name, viewer.principal.workspace)
        doc = get_document(db, found, path)
        chunks: list[Chunk] = list(doc.chunks)
        lines = document_lines(db, doc)
        pages = {c.start_line: c.page for c in chunks if c.page is not None}
        images = [{"info": i, "url": image_path(found.name, doc.path, i.ref),
                   "boxes": [(c, box_style(c.bbox, i.width, i.height)) for c in chunks
                             if c.image_ref == i.ref][:MAX_BOXES]}
                  for i in document_images(db, doc)[:MAX_IMAGES]]
        return render(request, "document.html", corpus=found, doc=doc, chunks=chunks,
                      lines=lines[:MAX_LINES], cut=max(0, len(lines) - MAX_LINES), pages=pages,
                      images=images)


def _search(workspace: str, name: str, query: str, k: int) -> tuple[list[dict[str, Any]], bool]:
    searcher = get_searcher()
    with session_scope() as db:
        found = get_corpus(db, name, workspace)
        ranked = searcher.search(db, found.id, query, k)
        hits = [{"path": r.chunk.document.path, "start": r.chunk.start_line, "end": r.chunk.end_line,
                 "symbol": r.chunk.symbol, "kind": r.chunk.symbol_kind, "fused": r.score,
                 "dense": r.dense, "bm25_rank": r.keyword_rank, "dense_rank": r.dense_rank,
                 "fused_rank": n, "text": r.chunk.text[:400]}
                for n, r in enumerate(ranked, start=1)]
        return hits, searcher.hybrid


@router.get("/corpora/{name}/search")
async def search(request: Request, name: str, viewer: ReadViewer,
                 q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
                 k: Annotated[int, Query(ge=1, le=50)] = 10) -> Response:
    """What hybrid retrieval returns for ``q``: each chunk's BM25 rank, dense rank and fused rank."""
    if not q.strip():
        raise InvalidInputError("type a query to see what retrieval returns for it")
    hits, hybrid = await run_in_threadpool(_search, viewer.principal.workspace, name, q.strip(), k)
    template = "fragments/search.html" if is_htmx(request) else "search.html"
    return render(request, template, name=name, q=q, hits=hits, hybrid=hybrid)
