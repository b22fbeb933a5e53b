"""``/v1/corpora/{name}/documents/{path}/images/{ref}``: a document's stored image (a figure, a scanned
page, an image file), as the citations of its OCR text link to it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from corral.core.services import get_corpus
from corral.core.services.documents import SAFE_IMAGE_TYPES, get_document_image
from corral.platform.api.auth import ReadCaller
from corral.platform.api.deps import SessionDep

router = APIRouter(prefix="/corpora", tags=["corpora"])

IMAGE_HEADERS = {
    "Cache-Control": "private, max-age=300",
    "X-Content-Type-Options": "nosniff",
    # An image opened on its own runs nothing, whatever its bytes hold.
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def image_response(mime: str, data: bytes) -> Response:
    """The stored bytes as the image they are; a type that is not a plain raster image is sent as
    bytes to download, never rendered."""
    safe = mime in SAFE_IMAGE_TYPES
    headers = dict(IMAGE_HEADERS)
    if not safe:
        headers["Content-Disposition"] = "attachment"
    return Response(data, media_type=mime if safe else "application/octet-stream", headers=headers)


@router.get("/{name}/documents/{path:path}/images/{ref}", response_class=Response,
            responses={200: {"content": {"image/png": {}, "image/jpeg": {}},
                             "description": "The stored image"}})
def document_image(name: str, path: str, ref: str, caller: ReadCaller, session: SessionDep) -> Response:
    """The stored image ``ref`` of the document at ``path`` (its path in the corpus, slashes and
    all): what a citation's ``image_url`` points at, and its ``bbox`` is in this image's pixels.
    404 for a ref the document does not have, and for another workspace's corpus."""
    corpus = get_corpus(session, name, caller.workspace)
    image = get_document_image(session, corpus, path, ref)
    return image_response(image.mime, image.data)
