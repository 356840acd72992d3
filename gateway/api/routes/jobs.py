from __future__ import annotations

from fastapi import APIRouter, Body, Request, status

from gateway.api.deps import Jobs, Tenant
from memq.contracts import ErrorResponse, JobAccepted, JobPublic, JobRequest

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_errors: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.post(
    "", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted, responses=_errors
)
def submit_job(
    request: Request, tenant: Tenant, jobs: Jobs, job: JobRequest = Body()
) -> JobAccepted:
    """Queue a generate or summarize job; poll the returned status URL."""
    record = jobs.submit(tenant, job)
    url = str(request.url_for("get_job", job_id=record.id))
    return JobAccepted(id=record.id, status=record.status, status_url=url)


@router.get("/{job_id}", response_model=JobPublic, responses={404: {"model": ErrorResponse}})
def get_job(request: Request, job_id: str, tenant: Tenant, jobs: Jobs) -> JobPublic:
    """A job's status, per-state timestamps, progress while running, and its result."""
    record = jobs.get(tenant, job_id)
    return record.public(status_url=str(request.url_for("get_job", job_id=job_id)))
