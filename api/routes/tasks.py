"""Dispatch (督办): tasks that send a person to an alert, incident or fire event, and their field steps."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from pydantic import BaseModel, Field

from alerts import dispatch, photos
from api.auth import Operator, Reader
from api.deps import ConnDep
from api.schemas import BINARY, Page
from registry.accounts import Role
from registry.errors import Invalid

router = APIRouter(prefix="/api/v1/tasks", tags=["dispatch"])
CITY_TIME = ZoneInfo("Asia/Shanghai")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
STEP_BODY_BYTES = photos.MAX_PHOTOS_PER_STEP * photos.MAX_PHOTO_BYTES + 256 * 1024
"""A field step's whole multipart body: its photos at their limit, the form fields and the part headers."""


class TaskIn(BaseModel):
    subject_type: Literal["alert", "incident", "fire_event"]
    subject_id: int
    assignee: str = Field(description="the login of the account sent")
    due_at: dt.datetime = Field(description="when the task is due, with its time zone")
    note: str | None = Field(default=None, max_length=2000)


class Decision(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class Task(BaseModel):
    id: int
    subject_type: str
    subject_id: int
    family: str
    severity: str
    division: str
    department: str
    assigner: str
    assignee: str
    note: str | None
    status: Literal["assigned", "verified", "rectified", "closed"]
    level: Literal["township", "county", "city"] = Field(description="where it stands after escalations")
    due_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    closed_at: dt.datetime | None
    overdue: bool


class Step(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: Literal["assign", "verify", "rectify", "close", "reject", "escalate"]
    note: str | None
    lat: float | None
    lon: float | None
    photos: list[int] = Field(description="ids for GET /api/v1/tasks/{task_id}/photos/{photo_id}")


class TaskDetail(Task):
    steps: list[Step]


class TaskCount(BaseModel):
    department: str
    county: str
    county_name: str
    open: int
    overdue: int = Field(description="still open past due, or closed after it")
    closed: int


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskDetail)
def assign(conn: ConnDep, who: Operator, item: TaskIn) -> TaskDetail:
    """Send a person to an alert, incident or fire event in the caller's view, with a due time."""
    with conn.transaction():
        task_id = dispatch.assign(conn, who, subject_type=item.subject_type, subject_id=item.subject_id,
                                  assignee=item.assignee, due_at=item.due_at, note=item.note)
    return TaskDetail.model_validate(dispatch.get_task(conn, who, task_id))


@router.get("", response_model=Page[Task])
def list_tasks(
    conn: ConnDep, who: Reader,
    mine: Annotated[bool, Query(description="only the tasks assigned to the caller")] = False,
    status: Literal["assigned", "verified", "rectified", "closed"] | None = None,
    overdue: Annotated[bool | None, Query(description="open and past due (true) or not (false)")] = None,
    after: Annotated[int | None, Query(description="cursor: `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[Task]:
    """Tasks in the caller's view, newest first."""
    rows = dispatch.list_tasks(conn, who, mine=mine, status=status, overdue=overdue, before_id=after,
                               limit=limit + 1)
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return Page[Task](data=rows[:limit], next=next_cursor)


class Assignee(BaseModel):
    login: str
    name: str
    department: str | None
    roles: list[Role]


@router.get("/assignees", response_model=Page[Assignee])
def assignees(conn: ConnDep, who: Operator) -> Page[Assignee]:
    """Whom the caller may send (the 派发 picker): the enabled people of its department (every department's for
    the platform admin), not the leading group; the whole list in one page (`next` is null)."""
    return Page[Assignee](data=[Assignee.model_validate(row) for row in dispatch.assignees(conn, who)], next=None)


@router.get("/summary", response_model=Page[TaskCount])
def summary(conn: ConnDep, who: Reader,
            month: Annotated[str, Query(description="YYYY-MM, in city time")]) -> Page[TaskCount]:
    """Per department and county, the tasks assigned in the month: open, overdue, closed (绩效考评); every row in
    one page (`next` is null)."""
    if not _MONTH.match(month):
        raise Invalid("month is YYYY-MM", field="month")
    start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=CITY_TIME)
    return Page[TaskCount](data=[TaskCount.model_validate(row) for row in dispatch.summary(conn, who, start)],
                           next=None)


@router.get("/{task_id}", response_model=TaskDetail)
def get_task(conn: ConnDep, who: Reader, task_id: int) -> TaskDetail:
    return TaskDetail.model_validate(dispatch.get_task(conn, who, task_id))


def _field_step(conn, who, task_id: int, action: str, note: str | None, lat: float | None, lon: float | None,
                uploads: list[UploadFile]) -> TaskDetail:
    images = photos.accept([(u.filename or "photo", u.file.read(photos.MAX_PHOTO_BYTES + 1))
                            for u in uploads[:photos.MAX_PHOTOS_PER_STEP + 1]])
    with conn.transaction():
        dispatch.act(conn, who, task_id, action, note, lat=lat, lon=lon, photos=images)
    return TaskDetail.model_validate(dispatch.get_task(conn, who, task_id))


Note = Annotated[str | None, Form(max_length=2000)]
Lat = Annotated[float | None, Form(ge=-90, le=90, description="WGS84 latitude of the phone")]
Lon = Annotated[float | None, Form(ge=-180, le=180, description="WGS84 longitude of the phone")]
Photos = Annotated[list[UploadFile], File(description=f"JPEG or PNG, at most {photos.MAX_PHOTOS_PER_STEP} "
                                                      f"of {photos.MAX_PHOTO_BYTES // 2**20} MiB each")]


@router.post("/{task_id}/verify", response_model=TaskDetail, max_body_size=STEP_BODY_BYTES)
def verify(conn: ConnDep, who: Reader, task_id: int, lat: Lat, lon: Lon, note: Note = None,
           photo: Photos = []) -> TaskDetail:  # noqa: B006 - FastAPI copies the default
    """The assignee's field verification: a note, photos and the GPS position (multipart form)."""
    return _field_step(conn, who, task_id, "verify", note, lat, lon, photo)


@router.post("/{task_id}/rectify", response_model=TaskDetail, max_body_size=STEP_BODY_BYTES)
def rectify(conn: ConnDep, who: Reader, task_id: int, note: Note = None, lat: Lat = None, lon: Lon = None,
            photo: Photos = []) -> TaskDetail:  # noqa: B006 - FastAPI copies the default
    """The assignee reports the rectification: a note and photos (multipart form)."""
    return _field_step(conn, who, task_id, "rectify", note, lat, lon, photo)


@router.post("/{task_id}/{decision}", response_model=TaskDetail)
def decide(conn: ConnDep, who: Reader, task_id: int, decision: Literal["close", "reject"],
           body: Decision | None = None) -> TaskDetail:
    """The assigner closes the task, or rejects the field work back to the assignee."""
    with conn.transaction():
        dispatch.act(conn, who, task_id, decision, body.note if body else None)
    return TaskDetail.model_validate(dispatch.get_task(conn, who, task_id))


@router.get("/{task_id}/photos/{photo_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": BINARY, "image/png": BINARY}}})
def get_photo(conn: ConnDep, who: Reader, task_id: int, photo_id: int) -> Response:
    content_type, image = dispatch.photo(conn, who, task_id, photo_id)
    return Response(image, media_type=content_type, headers={"Cache-Control": "private, max-age=86400"})
