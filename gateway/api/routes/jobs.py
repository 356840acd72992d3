from __future__ import annotations

from fastapi import APIRouter, Body, status

from gateway.api.deps import Jobs, Settings, Tenant
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
    tenant: Tenant, jobs: Jobs, settings: Settings, job: JobRequest = Body()
) -> JobAccepted:
    """Queue a generate or summarize job; poll the returned status URL."""
    record = jobs.submit(tenant, job)
    return JobAccepted(
        id=record.id, status=record.status, status_url=jobs.status_url(settings, record.id)
    )


@router.get("/{job_id}", response_model=JobPublic, responses={404: {"model": ErrorResponse}})
def get_job(job_id: str, tenant: Tenant, jobs: Jobs, settings: Settings) -> JobPublic:
    """A job's status, per-state timestamps, progress while running, and its result."""
    return jobs.get(tenant, job_id).public(status_url=jobs.status_url(settings, job_id))
