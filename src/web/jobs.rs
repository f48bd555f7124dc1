//! `/admin/v1/jobs`: the operator's view of background work, and retrying what failed.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, ListParams};
use super::merchants::Page;
use crate::domain::ids::JobId;
use crate::store::jobs::{self, Job};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_jobs)).routes(routes!(retry_job))
}

/// A job's state.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobQuery {
    /// How many jobs to return (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Return jobs older than this id.
    starting_after: Option<JobId>,
    /// Only jobs in this state (e.g. `failed`).
    state: Option<JobState>,
}

/// List background jobs (operator).
///
/// Newest first; `?state=failed` shows what needs attention, with each job's last error.
#[utoipa::path(get, path = "/admin/v1/jobs", tag = "Operator", params(JobQuery),
    responses((status = 200, description = "Jobs, newest first", body = Page<Job>)),
    security(("admin" = [])))]
async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<Page<Job>>, ApiError> {
    let limit = ListParams { limit: q.limit, starting_after: None }.limit()?;
    let mut conn = state.db.conn().await?;
    let rows = jobs::list(&mut conn, q.state.map(JobState::as_str), limit + 1, q.starting_after).await?;
    Ok(Json(Page::from_rows(rows, limit)))
}

/// Retry a failed job (operator).
///
/// Queues it again at once, with its attempts counted afresh.
#[utoipa::path(post, path = "/admin/v1/jobs/{job_id}/retry", tag = "Operator",
    params(("job_id" = JobId, Path)),
    responses((status = 200, description = "The job, queued again", body = Job),
              (status = 404, description = "No such job", body = ErrorBody),
              (status = 409, description = "The job has not failed", body = ErrorBody)),
    security(("admin" = [])))]
async fn retry_job(State(state): State<AppState>, ApiPath(id): ApiPath<JobId>) -> Result<Json<Job>, ApiError> {
    let mut tx = state.db.begin().await?;
    let job = jobs::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    if !jobs::retry(&mut tx, id, state.clock.now()).await? {
        return Err(ApiError::conflict(format!("the job is {}, not failed", job.state)));
    }
    let job = jobs::get(&mut tx, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    tx.commit().await?;
    Ok(Json(job))
}
