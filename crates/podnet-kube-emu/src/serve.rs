//! The HTTPS front of the emulator: the Node endpoints of `/api/v1` that
//! podnet, kubectl and kubelet use, with the real server's verbs, watch
//! stream, bookmarks, 401, 403, 404, 409 and 410 answers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::objects::{ObjEvent, Objects};
use crate::rbac::{Role, User, allowed};

mod objects;
use crate::world::{Answer, Event, ListAt, PatchKind, World, status};

/// What every request handler shares.
pub struct Shared {
    world: Mutex<World>,
    events: broadcast::Sender<Event>,
    object_events: broadcast::Sender<ObjEvent>,
    cut: watch::Sender<u64>,
    role: Role,
    tokens: HashMap<String, User>,
    bookmark_every: Duration,
    /// Requests podnet's service account made.
    requests: std::sync::atomic::AtomicU64,
    /// Verbs ("get", "list", "watch") whose requests are accepted and
    /// never answered, as by a server that hangs.
    hang: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(role: Role, tokens: HashMap<String, User>) -> Arc<Shared> {
        Arc::new(Shared {
            world: Mutex::default(),
            events: broadcast::channel(4096).0,
            object_events: broadcast::channel(4096).0,
            cut: watch::channel(0).0,
            role,
            tokens,
            // About a real server's: its watch cache bookmarks each
            // watcher about once a minute.
            bookmark_every: Duration::from_secs(60),
            requests: Default::default(),
            hang: Mutex::default(),
        })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world())
    }

    /// Runs a change and tells the watches, under one lock, so that a
    /// watch never misses or repeats an event.
    pub fn change(&self, f: impl FnOnce(&mut World) -> Answer<Event>) -> Answer<Event> {
        let mut world = self.world();
        let event = f(&mut world)?;
        let _ = self.events.send(event.clone());
        Ok(event)
    }

    /// Writes an object other than a Node and tells its watches, under
    /// one lock; an unchanging patch tells nobody.
    pub fn change_object(
        &self,
        f: impl FnOnce(&mut Objects, u64) -> Answer<ObjEvent>,
    ) -> Answer<ObjEvent> {
        let mut world = self.world();
        let before = world.revision();
        let event = world.write_object(f)?;
        if world.revision() != before {
            let _ = self.object_events.send(event.clone());
        }
        Ok(event)
    }

    /// Ends every open watch, as a load balancer or a restart would.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    pub fn compact(&self) {
        self.world().compact();
    }

    /// A write to something other than a Node: the revision moves.
    pub fn other_write(&self) {
        self.world().other_write();
    }

    /// From now on, requests of these verbs are accepted and never
    /// answered (none: every request is answered again).
    pub fn hang(&self, verbs: &[&str]) {
        *self.hang.lock().unwrap_or_else(|p| p.into_inner()) =
            verbs.iter().map(|v| v.to_string()).collect();
    }

    /// Never returns while requests of `verb` hang.
    async fn answer(&self, verb: &str) {
        let hung = self
            .hang
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|v| v == verb);
        if hung {
            std::future::pending::<()>().await;
        }
    }

    /// Requests podnet's service account made so far (a watch counts
    /// once, when it is opened).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    objects::routes(Router::new())
        .route("/api/v1/nodes", get(list_or_watch).post(create))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).put(update).patch(patch_node).delete(delete),
        )
        .route(
            "/api/v1/nodes/{name}/status",
            get(get_node).patch(patch_status).put(update_status),
        )
        .route("/emulator/compact", post(compact))
        .route("/emulator/cut-watches", post(cut_watches))
        .route("/emulator/requests", get(requests))
        .fallback(|| async {
            fail(status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                None,
            ))
        })
        .with_state(shared)
}

fn fail(s: Box<Status>) -> Response {
    let code = s
        .code
        .and_then(|c| StatusCode::from_u16(u16::try_from(c).ok()?).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = serde_json::to_value(&s).unwrap_or_default();
    body["kind"] = "Status".into();
    body["apiVersion"] = "v1".into();
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok<T: serde::Serialize>(code: StatusCode, kind: &str, v: &T) -> Response {
    let mut body = serde_json::to_value(v).unwrap_or_default();
    body["kind"] = kind.into();
    body["apiVersion"] = "v1".into();
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The caller, and 401 or 403 unless it may `verb` the `resource`.
fn authorize(
    s: &Shared,
    headers: &HeaderMap,
    verb: &str,
    resource: &str,
    name: Option<&str>,
) -> Result<User, Response> {
    authorize_in(s, headers, verb, "", resource, name)
}

/// As [`authorize`], for a resource of API group `group`.
fn authorize_in(
    s: &Shared,
    headers: &HeaderMap,
    verb: &str,
    group: &str,
    resource: &str,
    name: Option<&str>,
) -> Result<User, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user = token.and_then(|t| s.tokens.get(t)).cloned();
    if user == Some(User::Podnet) {
        s.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let Some(user) = user else {
        return Err(fail(status(
            401,
            "Unauthorized",
            "Unauthorized".into(),
            None,
        )));
    };
    if allowed(&user, &s.role, verb, group, resource) {
        return Ok(user);
    }
    // As the API server words it (the RBAC authorizer's reason, inside
    // a Forbidden for the resource): the subresource joins the resource.
    let plural = resource.split('/').next().unwrap_or(resource);
    let what = match name {
        Some(n) => format!("{plural} \"{n}\""),
        None => plural.into(),
    };
    Err(fail(status(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" at the cluster scope",
            user.name()
        ),
        name,
    )))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    watch: Option<String>,
    resource_version: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    resource_version_match: Option<String>,
    timeout_seconds: Option<u64>,
    allow_watch_bookmarks: Option<bool>,
}

fn rv(q: &Option<String>) -> Option<u64> {
    q.as_deref().and_then(|v| v.parse().ok())
}

async fn list_or_watch(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let watching = matches!(q.watch.as_deref(), Some("true" | "1"));
    let verb = if watching { "watch" } else { "list" };
    if let Err(r) = authorize(&s, &headers, verb, "nodes", None) {
        return r;
    }
    s.answer(verb).await;
    if watching {
        return start_watch(s, q);
    }
    let limit = q.limit.unwrap_or(0);
    let at = match ListAt::of(
        q.resource_version.as_deref(),
        q.resource_version_match.as_deref(),
        limit,
    ) {
        Ok(at) => at,
        Err(why) => return fail(status(400, "BadRequest", why, None)),
    };
    if q.continue_.is_some() && !matches!(at, ListAt::Latest) {
        let why = "specifying resource version is not allowed when using continue".to_owned();
        return fail(status(400, "BadRequest", why, None));
    }
    let answer = s.world().list(at, q.continue_.as_deref(), limit);
    match answer {
        Ok((items, metadata)) => ok(
            StatusCode::OK,
            "NodeList",
            &k8s_openapi::List { items, metadata },
        ),
        Err(e) => fail(e),
    }
}

fn start_watch(s: Arc<Shared>, q: ListQuery) -> Response {
    // Subscribed under the lock that also reads the history: nothing is
    // missed between the two.
    let (since, history, live, cut) = {
        let world = s.world();
        let since = rv(&q.resource_version).unwrap_or(world.revision());
        (
            since,
            world.events_since(since),
            s.events.subscribe(),
            s.cut.subscribe(),
        )
    };
    let node_line = |e: &Event| {
        let mut obj = serde_json::to_value(&e.node).unwrap_or_default();
        obj["kind"] = "Node".into();
        obj["apiVersion"] = "v1".into();
        (e.rv, line(e.kind.as_str(), obj))
    };
    let history = history.map(|h| h.iter().map(node_line).collect());
    stream(
        s,
        &q,
        since,
        history,
        live,
        cut,
        move |e| Some(node_line(e)),
        ("Node", "v1"),
    )
}

fn line(kind: &str, object: Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// A watch's response: `history` (each line with its revision) replayed,
/// then every `live` event `render` keeps, bookmarks (of `bookmark`'s kind
/// and apiVersion) if asked, until the timeout, a cut, or the client
/// leaves.
#[allow(clippy::too_many_arguments)]
fn stream<E: Clone + Send + 'static>(
    s: Arc<Shared>,
    q: &ListQuery,
    since: u64,
    history: Answer<Vec<(u64, Bytes)>>,
    mut live: broadcast::Receiver<E>,
    mut cut: watch::Receiver<u64>,
    render: impl Fn(&E) -> Option<(u64, Bytes)> + Send + 'static,
    bookmark: (&'static str, &'static str),
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let timeout = Duration::from_secs(q.timeout_seconds.unwrap_or(1800));
    let bookmarks = q.allow_watch_bookmarks.unwrap_or(false);
    tokio::spawn(async move {
        let history = match history {
            Ok(h) => h,
            Err(status) => {
                let mut obj = serde_json::to_value(&status).unwrap_or_default();
                obj["kind"] = "Status".into();
                obj["apiVersion"] = "v1".into();
                let _ = tx.send(line("ERROR", obj)).await;
                return;
            }
        };
        // The revision this stream has delivered everything up to: what a
        // bookmark may say (never past an event still in the channel).
        let mut last = since;
        for (rv, l) in history {
            last = rv;
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(s.bookmark_every);
        tick.tick().await;
        loop {
            let out = tokio::select! {
                e = live.recv() => match e {
                    Ok(e) => match render(&e) {
                        Some((rv, l)) if rv > last => { last = rv; l }
                        _ => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    // The cluster's revision, if no event is still on its
                    // way here (events are sent under the world's lock).
                    let now = {
                        let world = s.world();
                        if live.is_empty() { world.revision().max(last) } else { last }
                    };
                    last = now;
                    line("BOOKMARK", json!({"kind": bookmark.0, "apiVersion": bookmark.1, "metadata": {"resourceVersion": now.to_string()}}))
                }
                _ = cut.changed() => return,
                _ = &mut deadline => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn get_node(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "get", "nodes", Some(&name)) {
        return r;
    }
    s.answer("get").await;
    match s.world().get(&name) {
        Ok(node) => ok(StatusCode::OK, "Node", &node),
        Err(e) => fail(e),
    }
}

fn parse_node(body: &Bytes) -> Result<Node, Response> {
    serde_json::from_slice(body).map_err(|e| fail(status(400, "BadRequest", e.to_string(), None)))
}

fn answer(code: StatusCode, a: Answer<Event>) -> Response {
    match a {
        Ok(e) => ok(code, "Node", &e.node),
        Err(e) => fail(e),
    }
}

async fn create(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&s, &headers, "create", "nodes", None) {
        return r;
    }
    match parse_node(&body) {
        Ok(node) => answer(StatusCode::CREATED, s.change(|w| w.create(node))),
        Err(r) => r,
    }
}

async fn update(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put(s, headers, name, body, "nodes").await
}

async fn update_status(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    put(s, headers, name, body, "nodes/status").await
}

async fn put(
    s: Arc<Shared>,
    headers: HeaderMap,
    name: String,
    body: Bytes,
    resource: &str,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "update", resource, Some(&name)) {
        return r;
    }
    match parse_node(&body) {
        Ok(node) => answer(StatusCode::OK, s.change(|w| w.update(&name, node))),
        Err(r) => r,
    }
}

async fn patch_node(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    patch(s, headers, name, body, false).await
}

async fn patch_status(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    patch(s, headers, name, body, true).await
}

async fn patch(
    s: Arc<Shared>,
    headers: HeaderMap,
    name: String,
    body: Bytes,
    status_sub: bool,
) -> Response {
    let resource = if status_sub { "nodes/status" } else { "nodes" };
    if let Err(r) = authorize(&s, &headers, "patch", resource, Some(&name)) {
        return r;
    }
    let kind = match patch_kind(&headers) {
        Ok(kind) => kind,
        Err(r) => return r,
    };
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return fail(status(400, "BadRequest", e.to_string(), None)),
    };
    answer(
        StatusCode::OK,
        s.change(|w| w.patch(&name, kind, &patch, status_sub)),
    )
}

/// The patch's kind from its content type; 415 for any other.
fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match content_type {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        other => Err(fail(status(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {other}"),
            None,
        ))),
    }
}

async fn delete(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, "delete", "nodes", Some(&name)) {
        return r;
    }
    answer(StatusCode::OK, s.change(|w| w.delete(&name)))
}

async fn compact(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin_only(&s, &headers, || s.compact())
}

/// How many requests podnet's service account made, as `{"podnet": N}`.
async fn requests(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorize(&s, &headers, "emulate", "emulator", None) {
        Ok(User::Admin) => ok(
            StatusCode::OK,
            "Requests",
            &serde_json::json!({"podnet": s.requests()}),
        ),
        Ok(_) => StatusCode::FORBIDDEN.into_response(),
        Err(r) => r,
    }
}

async fn cut_watches(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    admin_only(&s, &headers, || s.cut_watches())
}

fn admin_only(s: &Shared, headers: &HeaderMap, f: impl FnOnce()) -> Response {
    match authorize(s, headers, "emulate", "emulator", None) {
        Ok(User::Admin) => {
            f();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => StatusCode::FORBIDDEN.into_response(),
        Err(r) => r,
    }
}

/// Serves `router` over TLS on `listener` until the process ends.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    app: Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
