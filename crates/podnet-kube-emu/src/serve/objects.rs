//! The routes of Namespaces, Pods (and `pods/status`) and
//! NetworkPolicies: list and watch (every namespace, or one), get,
//! create, update, merge and strategic merge patches, delete; the same
//! verbs, answers and RBAC as the Nodes'.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::{ListQuery, Shared, authorize_in, fail, line, rv, stream};
use crate::objects::{Kind, NAMESPACES, NETWORK_POLICIES, ObjEvent, PODS};
use crate::world::{Answer, status};

/// Every route of the three resources.
pub fn routes(r: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    let r = r
        .route(
            "/api/v1/namespaces",
            get(|s, h, q| list(s, h, q, &NAMESPACES, None))
                .post(|s, h, b| create(s, h, &NAMESPACES, String::new(), b)),
        )
        .route(
            "/api/v1/namespaces/{name}",
            get(|s, h, Path(n)| one(s, h, &NAMESPACES, String::new(), n))
                .put(|s, h, Path(n), b| replace(s, h, &NAMESPACES, String::new(), n, b))
                .patch(|s, h, Path(n), b| patch(s, h, &NAMESPACES, String::new(), n, b, false))
                .delete(|s, h, Path(n)| delete(s, h, &NAMESPACES, String::new(), n)),
        );
    [
        (&PODS, "/api/v1"),
        (&NETWORK_POLICIES, "/apis/networking.k8s.io/v1"),
    ]
    .into_iter()
    .fold(r, |r, (kind, base)| namespaced(r, kind, base))
}

fn namespaced(r: Router<Arc<Shared>>, kind: &'static Kind, base: &str) -> Router<Arc<Shared>> {
    let res = kind.resource;
    let r = r
        .route(
            &format!("{base}/{res}"),
            get(move |s, h, q| list(s, h, q, kind, None)),
        )
        .route(
            &format!("{base}/namespaces/{{ns}}/{res}"),
            get(move |s, h, Path(ns): Path<String>, q| list(s, h, q, kind, Some(ns)))
                .post(move |s, h, Path(ns), b| create(s, h, kind, ns, b)),
        )
        .route(
            &format!("{base}/namespaces/{{ns}}/{res}/{{name}}"),
            get(move |s, h, Path((ns, n))| one(s, h, kind, ns, n))
                .put(move |s, h, Path((ns, n)), b| replace(s, h, kind, ns, n, b))
                .patch(move |s, h, Path((ns, n)), b| patch(s, h, kind, ns, n, b, false))
                .delete(move |s, h, Path((ns, n))| delete(s, h, kind, ns, n)),
        );
    if !kind.status {
        return r;
    }
    r.route(
        &format!("{base}/namespaces/{{ns}}/{res}/{{name}}/status"),
        get(move |s, h, Path((ns, n))| one(s, h, kind, ns, n))
            .patch(move |s, h, Path((ns, n)), b| patch(s, h, kind, ns, n, b, true)),
    )
}

/// 401 or 403 unless the caller may `verb` `kind` (or its `sub`resource).
fn may(
    s: &Shared,
    h: &HeaderMap,
    verb: &str,
    kind: &Kind,
    sub: Option<&str>,
    name: Option<&str>,
) -> Result<(), Response> {
    let resource = match sub {
        Some(sub) => format!("{}/{sub}", kind.resource),
        None => kind.resource.to_owned(),
    };
    authorize_in(s, h, verb, kind.group, &resource, name).map(drop)
}

fn json(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn answer(code: StatusCode, a: Answer<ObjEvent>) -> Response {
    match a {
        Ok(e) => json(code, &e.object),
        Err(e) => fail(e),
    }
}

fn body(b: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(b).map_err(|e| fail(status(400, "BadRequest", e.to_string(), None)))
}

async fn list(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    Query(q): Query<ListQuery>,
    kind: &'static Kind,
    ns: Option<String>,
) -> Response {
    let watching = matches!(q.watch.as_deref(), Some("true" | "1"));
    let verb = if watching { "watch" } else { "list" };
    if let Err(r) = may(&s, &h, verb, kind, None, None) {
        return r;
    }
    s.answer(verb).await;
    if !watching {
        let (items, metadata) = {
            let world = s.world();
            world.objects.list(kind, ns.as_deref(), world.revision())
        };
        let mut v = serde_json::json!({"items": items, "metadata": metadata});
        v["kind"] = format!("{}List", kind.kind).into();
        v["apiVersion"] = kind.api_version.into();
        return json(StatusCode::OK, &v);
    }
    let (since, history, live, cut) = {
        let world = s.world();
        let since = rv(&q.resource_version).unwrap_or(world.revision());
        (
            since,
            world
                .objects
                .events_since(kind.resource, ns.as_deref(), since),
            s.object_events.subscribe(),
            s.cut.subscribe(),
        )
    };
    let render = move |e: &ObjEvent| {
        let ours = e.resource == kind.resource
            && ns.as_deref().is_none_or(|n| {
                e.object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(n)
            });
        ours.then(|| (e.rv, line(e.kind.as_str(), e.object.clone())))
    };
    let history = history.map(|h| h.iter().filter_map(&render).collect());
    stream(
        s.clone(),
        &q,
        since,
        history,
        live,
        cut,
        render,
        (kind.kind, kind.api_version),
    )
}

async fn one(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    kind: &'static Kind,
    ns: String,
    name: String,
) -> Response {
    if let Err(r) = may(&s, &h, "get", kind, None, Some(&name)) {
        return r;
    }
    s.answer("get").await;
    let got = s.world().objects.get(kind, &ns, &name);
    match got {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => fail(e),
    }
}

async fn create(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    kind: &'static Kind,
    ns: String,
    b: Bytes,
) -> Response {
    if let Err(r) = may(&s, &h, "create", kind, None, None) {
        return r;
    }
    match body(&b) {
        Ok(v) => answer(
            StatusCode::CREATED,
            s.change_object(|o, rv| o.create(rv, kind, &ns, v)),
        ),
        Err(r) => r,
    }
}

async fn replace(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    kind: &'static Kind,
    ns: String,
    name: String,
    b: Bytes,
) -> Response {
    if let Err(r) = may(&s, &h, "update", kind, None, Some(&name)) {
        return r;
    }
    match body(&b) {
        Ok(v) => answer(
            StatusCode::OK,
            s.change_object(|o, rv| o.replace(rv, kind, &ns, &name, v)),
        ),
        Err(r) => r,
    }
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    kind: &'static Kind,
    ns: String,
    name: String,
    b: Bytes,
    status_sub: bool,
) -> Response {
    let sub = status_sub.then_some("status");
    if let Err(r) = may(&s, &h, "patch", kind, sub, Some(&name)) {
        return r;
    }
    let how = match super::patch_kind(&h) {
        Ok(how) => how,
        Err(r) => return r,
    };
    match body(&b) {
        Ok(v) => answer(
            StatusCode::OK,
            s.change_object(|o, rv| o.patch(rv, kind, &ns, &name, how, &v, status_sub)),
        ),
        Err(r) => r,
    }
}

async fn delete(
    State(s): State<Arc<Shared>>,
    h: HeaderMap,
    kind: &'static Kind,
    ns: String,
    name: String,
) -> Response {
    if let Err(r) = may(&s, &h, "delete", kind, None, Some(&name)) {
        return r;
    }
    answer(
        StatusCode::OK,
        s.change_object(|o, rv| o.delete(rv, kind, &ns, &name)),
    )
}
