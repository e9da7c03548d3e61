//! HTTP: routing Kubernetes paths to the registry, content negotiation (JSON, YAML, Tables),
//! query parameters, authentication, and rendering results and errors.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Secret};
use serde_json::{json, Value};
use skiff_api::kinds::ApiKind;
use skiff_api::patch::PatchType;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::strict::FieldValidation;
use skiff_api::table;

use crate::auth::{Authenticator, User, UserKind};
use crate::authorizer::{self, Decision};
use crate::discovery;
use crate::error::{ApiError, Result};
use crate::protobuf;
use crate::registry::{parse_revision, BodyFormat, DeleteOptions, ListOptions, Registry};
use crate::resources::{self, ResourceInfo};
use crate::watch::{self, WatchEvent, WatchOptions};

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The largest request body accepted, as Kubernetes.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What every request handler shares.
pub struct State {
    pub registry: Registry,
    pub auth: Authenticator,
    pub server_address: String,
    /// The cluster CA certificate, served unauthenticated at `/cacerts` so joining agents can
    /// check it against the hash in their join token.
    pub ca_pem: String,
    openapi: OnceLock<Vec<(String, Bytes, String)>>,
    /// The client of nodes' streaming servers (pods/log, exec, ...), set once at bind.
    pub node_client: OnceLock<crate::node_proxy::NodeClient>,
}

impl State {
    pub fn new(
        registry: Registry,
        auth: Authenticator,
        server_address: String,
        ca_pem: String,
    ) -> Self {
        State {
            registry,
            auth,
            server_address,
            ca_pem,
            openapi: OnceLock::new(),
            node_client: OnceLock::new(),
        }
    }

    /// The OpenAPI documents with their hashes, built on first use (they are large).
    fn openapi(&self) -> &[(String, Bytes, String)] {
        self.openapi.get_or_init(|| {
            skiff_api::openapi::GROUP_VERSIONS
                .iter()
                .filter_map(|gv| {
                    let bytes =
                        Bytes::from_static(skiff_api::openapi::document_json(gv)?.as_bytes());
                    let hash = {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::hash::DefaultHasher::new();
                        bytes.hash(&mut h);
                        format!("{:016X}", h.finish())
                    };
                    Some((gv.to_string(), bytes, hash))
                })
                .collect()
        })
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn respond(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    respond(
        code,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

pub fn error_response(err: &ApiError) -> Response<Body> {
    let mut resp = json_response(err.code, &err.to_status());
    if let Some(seconds) = err.details.retry_after {
        resp.headers_mut()
            .insert("Retry-After", HeaderValue::from(seconds));
    }
    resp
}

fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
}

/// Query parameters, last value wins except where several are read.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> Result<bool> {
        match self.get(name) {
            None | Some("") | Some("false") | Some("0") | Some("False") => Ok(false),
            Some("true") | Some("1") | Some("True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for query parameter {name}: use true or false"
            ))),
        }
    }

    fn field_validation(&self) -> Result<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation {other:?} is not supported: use Strict, Warn or Ignore"
            ))),
        }
    }

    fn dry_run(&self) -> Result<bool> {
        let values: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| k == "dryRun")
            .map(|(_, v)| v.as_str())
            .collect();
        match values.as_slice() {
            [] => Ok(false),
            v if v.iter().all(|x| *x == "All") => Ok(true),
            v => Err(ApiError::bad_request(format!(
                "dryRun {:?} is not supported: the only value is All",
                v.join(",")
            ))),
        }
    }

    fn list_options(&self, info: &ResourceInfo) -> Result<ListOptions> {
        let label_selector = LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid labelSelector: {e}"
                ))
            })?;
        let field_selector =
            FieldSelector::parse(self.get("fieldSelector").unwrap_or(""), info.plural)
                .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))?;
        let rv = match self.get("resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) => Some(parse_revision(rv, "resourceVersion")?),
            None => None,
        };
        let (exact_revision, min_revision) =
            match self.get("resourceVersionMatch").filter(|s| !s.is_empty()) {
                None => (None, rv.filter(|r| *r > 0)),
                Some("NotOlderThan") => (None, rv),
                Some("Exact") => match rv {
                    Some(r) if r > 0 => (Some(r), None),
                    _ => {
                        return Err(ApiError::bad_request(
                            "resourceVersionMatch=Exact needs a resourceVersion other than 0",
                        ))
                    }
                },
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch {other:?} is not supported: use NotOlderThan or Exact"
                )))
                }
            };
        Ok(ListOptions {
            label_selector,
            field_selector,
            exact_revision,
            min_revision,
        })
    }
}

/// How the response should be shaped, from the Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Object,
    Table,
}

fn negotiate(accept: Option<&str>) -> Result<Shape> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Shape::Object);
    };
    let mut json_ok = false;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<&str> = parts.collect();
        if params.iter().any(|p| p.eq_ignore_ascii_case("as=Table")) {
            if media == "application/json" {
                return Ok(Shape::Table);
            }
            continue;
        }
        if params.iter().any(|p| p.starts_with("as=")) {
            continue;
        }
        if matches!(media, "application/json" | "*/*" | "application/*") {
            json_ok = true;
        }
    }
    if json_ok {
        Ok(Shape::Object)
    } else {
        Err(ApiError::not_acceptable(accept))
    }
}

fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("as=APIGroupDiscoveryList"))
}

async fn read_body(body: Incoming) -> Result<Bytes> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// The media type of a Content-Type header, without parameters, lower-cased.
fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn body_format(content_type: Option<&str>) -> Result<BodyFormat> {
    let media = media_type(content_type);
    match media.as_str() {
        "" | "application/json" | "*/*" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyFormat::Yaml),
        _ => Err(ApiError::unsupported_media_type(&media)),
    }
}

fn patch_type(content_type: Option<&str>) -> Result<PatchType> {
    let media = media_type(content_type);
    match media.as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "server-side apply is not supported yet: use client-side `kubectl apply` (without --server-side)",
        )),
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the patch content type {other:?} is not supported: use application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json"),
        )),
    }
}

/// Serves one request; never fails: errors become Status responses.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = match dispatch(&state, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    };
    tracing::debug!(%method, path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    Ok(resp)
}

async fn dispatch(state: &State, req: Request<Incoming>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => {
            return Ok(respond(200, "text/plain; charset=utf-8", "ok"))
        }
        "/version" | "/version/" => return Ok(json_response(200, &discovery::version())),
        // The CA only, as k3s' /cacerts: a joining agent trusts it once its hash matches the
        // one in its join token.
        "/cacerts" if req.method() == Method::GET => {
            return Ok(respond(
                200,
                "text/plain; charset=utf-8",
                state.ca_pem.clone(),
            ))
        }
        _ => {}
    }
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = state
        .auth
        .authenticate(authorization)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if path == crate::node_credentials::BOOTSTRAP_PATH {
        return bootstrap_node(state, &user, req).await;
    }
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // The join token serves only to obtain node credentials: resource requests are refused by
    // the authorizer (with the resource in the message), everything else here.
    let resource_path = matches!(
        segments.as_slice(),
        ["api", "v1", _, ..] | ["apis", _, _, _, ..]
    );
    if user.kind == UserKind::Join && !resource_path {
        let verb = req.method().as_str().to_ascii_lowercase();
        return Err(authorizer::forbidden_path(&user, &verb, &path));
    }
    let read_only = |resp: Response<Body>| -> Result<Response<Body>> {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            Ok(resp)
        } else {
            Err(ApiError::method_not_allowed(format!(
                "{} is not allowed on {path}",
                req.method()
            )))
        }
    };
    match segments.as_slice() {
        ["api"] => {
            if wants_aggregated(accept.as_deref()) {
                read_only(respond(
                    200,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    serde_json::to_vec(&discovery::aggregated(true)).unwrap_or_default(),
                ))
            } else {
                read_only(json_response(
                    200,
                    &discovery::api_versions(&state.server_address),
                ))
            }
        }
        ["apis"] => {
            if wants_aggregated(accept.as_deref()) {
                read_only(respond(
                    200,
                    discovery::AGGREGATED_CONTENT_TYPE,
                    serde_json::to_vec(&discovery::aggregated(false)).unwrap_or_default(),
                ))
            } else {
                read_only(json_response(200, &discovery::api_group_list()))
            }
        }
        ["api", version] => read_only(json_response(
            200,
            &discovery::resource_list("", version).ok_or_else(ApiError::no_route)?,
        )),
        ["apis", group] => read_only(json_response(
            200,
            &discovery::group(group).ok_or_else(ApiError::no_route)?,
        )),
        ["apis", group, version] => read_only(json_response(
            200,
            &discovery::resource_list(group, version).ok_or_else(ApiError::no_route)?,
        )),
        ["openapi", "v3"] => {
            let paths: serde_json::Map<String, Value> = state
                .openapi()
                .iter()
                .map(|(gv, _, hash)| {
                    (
                        gv.clone(),
                        json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}),
                    )
                })
                .collect();
            read_only(json_response(200, &json!({"paths": paths})))
        }
        ["openapi", "v3", rest @ ..] => {
            let gv = rest.join("/");
            let (_, bytes, _) = state
                .openapi()
                .iter()
                .find(|(g, _, _)| *g == gv)
                .ok_or_else(ApiError::no_route)?;
            let mut resp = respond(200, "application/json", bytes.clone());
            if query.get("hash").is_some() {
                resp.headers_mut().insert(
                    "Cache-Control",
                    HeaderValue::from_static("public, immutable"),
                );
            }
            read_only(resp)
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(state, ("", "v1"), &rest, query, accept, req, &user).await
        }
        ["apis", group, version, rest @ ..] => {
            let (group, version) = (group.to_string(), version.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(state, (&group, &version), &rest, query, accept, req, &user).await
        }
        _ => Err(ApiError::no_route()),
    }
}

/// `POST /skiff/v1/node-credentials` with the join token (or the admin's): records the node's
/// password hash, or refuses a name claimed with another password.
async fn bootstrap_node(
    state: &State,
    user: &User,
    req: Request<Incoming>,
) -> Result<Response<Body>> {
    let path = crate::node_credentials::BOOTSTRAP_PATH;
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not allowed on {path}: use POST",
            req.method()
        )));
    }
    if !matches!(user.kind, UserKind::Join | UserKind::Admin) {
        return Err(authorizer::forbidden_path(user, "post", path));
    }
    let body = read_body(req.into_body()).await?;
    let request = crate::node_credentials::parse_request(&body)?;
    crate::node_credentials::claim(
        state.registry.store.as_ref(),
        &request.node_name,
        &request.password,
    )
    .await?;
    state.auth.forget_node(&request.node_name);
    Ok(json_response(
        200,
        &crate::node_credentials::response(&request.node_name),
    ))
}

/// Where a resource request points.
struct Target<'a> {
    info: &'static ResourceInfo,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
    watch_path: bool,
}

fn route<'a>(group: &str, version: &str, rest: &'a [String]) -> Result<Target<'a>> {
    let (watch_path, rest) = match rest.first().map(String::as_str) {
        Some("watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let (namespace, plural, more): (Option<&str>, &str, &[String]) = match parts.as_slice() {
        ["namespaces", _, plural, ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            (Some(rest[1].as_str()), rest[2].as_str(), &rest[3..])
        }
        [_, ..] => (None, rest[0].as_str(), &rest[1..]),
        [] => return Err(ApiError::no_route()),
    };
    let info = resources::find(group, version, plural).ok_or_else(ApiError::no_route)?;
    if more.len() > 2 {
        return Err(ApiError::no_route());
    }
    let name = more.first().map(String::as_str);
    if info.namespaced && name.is_some() && namespace.is_none() {
        return Err(ApiError::no_route());
    }
    Ok(Target {
        info,
        namespace,
        name,
        subresource: more.get(1).map(String::as_str),
        watch_path,
    })
}

async fn resource(
    state: &State,
    (group, version): (&str, &str),
    rest: &[String],
    query: Query,
    accept: Option<String>,
    req: Request<Incoming>,
    user: &User,
) -> Result<Response<Body>> {
    let target = route(group, version, rest)?;
    let (mut parts, incoming) = req.into_parts();
    // Kept for an exec's protocol switch, which happens after this handler answers.
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        read_body(incoming).await?
    };
    authorize(state, user, &target, &query, &parts.method, &body).await?;
    if let ("Pod", Some(name), Some(sub @ ("exec" | "attach" | "portforward"))) =
        (target.info.kind, target.name, target.subresource)
    {
        let pod: Pod = state
            .registry
            .get_typed(target.info, target.namespace, name)
            .await?;
        let client = state.node_client.get();
        return if sub == "exec" || sub == "attach" {
            crate::node_proxy::exec(&state.registry, client, &pod, sub, &parts, on_upgrade).await
        } else {
            crate::node_proxy::portforward(&state.registry, client, &pod, &parts, on_upgrade).await
        };
    }
    // Nodes deleted by this request free their names: their credentials go with them.
    let nodes_before = if target.info.kind == "Node" && parts.method == Method::DELETE {
        Some(node_names(state).await?)
    } else {
        None
    };
    // Some(name) for one secret of kube-system deleted, Some(None) for a collection.
    let credentials_deleted = (target.info.kind == "Secret"
        && parts.method == Method::DELETE
        && target.namespace == Some(crate::node_credentials::NAMESPACE))
    .then_some(target.name);
    let resp = match target.info.kind {
        "Pod" => serve::<Pod>(state, target, query, accept, &parts, body).await,
        "Namespace" => serve::<Namespace>(state, target, query, accept, &parts, body).await,
        "Node" => serve::<Node>(state, target, query, accept, &parts, body).await,
        "Event" => serve::<Event>(state, target, query, accept, &parts, body).await,
        "Secret" => serve::<Secret>(state, target, query, accept, &parts, body).await,
        "Lease" => serve::<Lease>(state, target, query, accept, &parts, body).await,
        _ => Err(ApiError::no_route()),
    }?;
    if let Some(before) = nodes_before {
        release_deleted_nodes(state, before).await;
    }
    // A node's credentials are a Secret in kube-system: deleting it frees the name at once
    // here, as deleting the Node does, rather than when this server's cache expires.
    if let Some(deleted) = credentials_deleted {
        match deleted.and_then(crate::node_credentials::node_of_record) {
            Some(node) => state.auth.forget_node(node),
            None if deleted.is_none() => state.auth.forget_nodes(),
            None => {}
        }
    }
    Ok(resp)
}

/// The Kubernetes verb of a resource request.
fn verb(method: &Method, target: &Target<'_>, watch: bool) -> &'static str {
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if target.name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if target.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// Lets the request through or answers 403 as Kubernetes' authorizers do.
async fn authorize(
    state: &State,
    user: &User,
    target: &Target<'_>,
    query: &Query,
    method: &Method,
    body: &[u8],
) -> Result<()> {
    if user.kind == UserKind::Admin {
        return Ok(());
    }
    let watch = target.watch_path || query.flag("watch")?;
    let verb = verb(method, target, watch);
    // A create names its object in the body (the binding subresource in the path).
    let body_name = if verb == "create" && target.name.is_none() {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.pointer("/metadata/name")?.as_str().map(str::to_string))
    } else {
        None
    };
    let attrs = authorizer::Attributes {
        verb,
        group: target.info.group,
        resource: target.info.plural,
        subresource: target.subresource,
        namespace: target.namespace,
        name: target.name.or(body_name.as_deref()),
    };
    match authorizer::authorize(user, &attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(authorizer::forbidden(user, &attrs, &reason)),
        Decision::AllowIfPodBoundTo(node) => {
            let name = target.name.unwrap_or_default();
            let pod: Pod = match state
                .registry
                .get_typed(target.info, target.namespace, name)
                .await
            {
                Ok(pod) => pod,
                // Let the request fail on its own (404): the agent expects it for a pod that
                // is already gone.
                Err(e) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e),
            };
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if bound == Some(node.as_str()) {
                Ok(())
            } else {
                Err(authorizer::forbidden(
                    user,
                    &attrs,
                    &format!("pod {name:?} is not bound to node {node:?}"),
                ))
            }
        }
        Decision::AllowIfSecretUsedOn(node) => {
            let namespace = target.namespace.unwrap_or_default();
            let name = target.name.unwrap_or_default();
            let options = crate::registry::ListOptions {
                field_selector: FieldSelector::parse(&format!("spec.nodeName={node}"), "pods")
                    .map_err(|e| ApiError::internal(e.to_string()))?,
                ..Default::default()
            };
            let pods = state
                .registry
                .list(&resources::PODS, Some(namespace), &options)
                .await?;
            let used = pods.items.iter().any(|body| {
                serde_json::from_slice::<Pod>(body)
                    .is_ok_and(|pod| authorizer::pod_uses_secret(&pod, name))
            });
            if used {
                Ok(())
            } else {
                Err(authorizer::forbidden(
                    user,
                    &attrs,
                    &format!("no relationship found between node '{node}' and this object"),
                ))
            }
        }
    }
}

/// The names of the nodes that exist now.
async fn node_names(state: &State) -> Result<std::collections::BTreeSet<String>> {
    let prefix = resources::NODES.prefix(None);
    let listed = state.registry.store.list(&prefix, None).await?;
    Ok(listed
        .items
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// Deletes the credentials of the nodes of `before` that are gone now, so their names can be
/// claimed again (k3s deletes a node's password Secret with its Node). A failure is logged:
/// those credentials then stay until deleted by hand.
async fn release_deleted_nodes(state: &State, before: std::collections::BTreeSet<String>) {
    let after = match node_names(state).await {
        Ok(after) => after,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list nodes to delete the credentials of deleted ones");
            return;
        }
    };
    for gone in before.difference(&after) {
        if let Err(e) = crate::node_credentials::release(state.registry.store.as_ref(), gone).await
        {
            tracing::warn!(node = %gone, error = %e, "cannot delete the credentials of a deleted node");
        }
        state.auth.forget_node(gone);
    }
}

fn delete_options(body: &[u8], query: &Query) -> Result<DeleteOptions> {
    let mut options = DeleteOptions {
        dry_run: query.dry_run()?,
        ..Default::default()
    };
    if let Some(g) = query.get("gracePeriodSeconds") {
        options.grace_period_seconds = Some(g.parse().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds {g:?} is not an integer"))
        })?);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(options);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {e}"))
    })?;
    if let Some(g) = value.get("gracePeriodSeconds").filter(|g| !g.is_null()) {
        options.grace_period_seconds = Some(
            g.as_i64()
                .ok_or_else(|| ApiError::bad_request("gracePeriodSeconds must be an integer"))?,
        );
    }
    if let Some(p) = value.get("preconditions") {
        options.precondition_uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
        options.precondition_resource_version = p
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(policy) = value.get("propagationPolicy").and_then(Value::as_str) {
        if !matches!(policy, "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!("propagationPolicy {policy:?} is not supported: use Orphan, Background or Foreground")));
        }
    }
    if let Some(dry) = value.get("dryRun").and_then(Value::as_array) {
        options.dry_run |= dry.iter().any(|d| d == "All");
    }
    Ok(options)
}

fn list_json(info: &ResourceInfo, items: &[Vec<u8>], revision: i64) -> Vec<u8> {
    let head = format!("{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{revision}\"}},\"items\":[", info.list_kind, info.api_version());
    let mut out =
        Vec::with_capacity(head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    out.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IncludeObject {
    None,
    Metadata,
    Object,
}

fn include_object(query: &Query) -> Result<IncludeObject> {
    match query.get("includeObject") {
        None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(other) => Err(ApiError::bad_request(format!(
            "includeObject {other:?} is not supported: use None, Metadata or Object"
        ))),
    }
}

fn table_rows(info: &ResourceInfo, objects: &[Value], include: IncludeObject) -> Vec<Value> {
    let now = crate::registry::now().0;
    objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": table::row_cells(info.plural, object, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object.get("metadata").cloned().unwrap_or(json!({}))});
                }
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect()
}

fn table_json(
    info: &ResourceInfo,
    objects: &[Value],
    revision: Option<i64>,
    include: IncludeObject,
) -> Value {
    let mut metadata = json!({});
    if let Some(r) = revision {
        metadata["resourceVersion"] = json!(r.to_string());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": table::column_definitions(info.plural),
        "rows": table_rows(info, objects, include),
    })
}

fn parse_objects(items: &[Vec<u8>]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::from_slice(i).ok())
        .collect()
}

fn object_response(
    code: u16,
    body: Vec<u8>,
    shape: Shape,
    info: &ResourceInfo,
    query: &Query,
    warnings: &[String],
) -> Result<Response<Body>> {
    let mut resp = match shape {
        Shape::Object => respond(code, "application/json", body),
        Shape::Table => {
            let object: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::internal(e.to_string()))?;
            json_response(
                code,
                &table_json(info, &[object], None, include_object(query)?),
            )
        }
    };
    add_warnings(&mut resp, warnings);
    Ok(resp)
}

async fn serve<K: ApiKind>(
    state: &State,
    target: Target<'_>,
    query: Query,
    accept: Option<String>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Body>> {
    let info = target.info;
    let registry = &state.registry;
    let shape = negotiate(accept.as_deref())?;
    let method = parts.method.clone();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let watch = target.watch_path || query.flag("watch")?;
    let ns = target.namespace;
    match (target.name, target.subresource, &method) {
        // Across all namespaces a namespaced resource is only read (list, watch), as in
        // Kubernetes: a create must name its namespace, and deletecollection may not span them.
        (None, None, m) if info.namespaced && ns.is_none() && m != Method::GET => {
            Err(ApiError::method_not_allowed(format!(
                "{method} is not supported on {} across all namespaces: use /namespaces/NAMESPACE/{}",
                info.qualified(),
                info.plural
            )))
        }
        (None, None, &Method::GET) if watch => {
            watch_response(state, info, ns, None, &query, shape).await
        }
        (None, None, &Method::GET) => {
            let listed = registry.list(info, ns, &query.list_options(info)?).await?;
            match shape {
                Shape::Object => Ok(respond(
                    200,
                    "application/json",
                    list_json(info, &listed.items, listed.revision),
                )),
                Shape::Table => Ok(json_response(
                    200,
                    &table_json(
                        info,
                        &parse_objects(&listed.items),
                        Some(listed.revision),
                        include_object(&query)?,
                    ),
                )),
            }
        }
        (None, None, &Method::POST) => {
            let decoded =
                decode_write::<K>(registry, info, &body, content_type.as_deref(), &query)?;
            let written = registry.create(info, ns, decoded, query.dry_run()?).await?;
            object_response(201, written.body, shape, info, &query, &written.warnings)
        }
        // Kubernetes serves no deletecollection for namespaces: one request may not empty a
        // cluster.
        (None, None, &Method::DELETE) if info.kind == "Namespace" => {
            Err(ApiError::method_not_allowed(format!(
                "DELETE is not supported on the collection of {}: delete namespaces one by one",
                info.qualified()
            )))
        }
        (None, None, &Method::DELETE) => {
            let options = delete_options(&body, &query)?;
            let listed = registry.list(info, ns, &query.list_options(info)?).await?;
            let mut deleted = Vec::new();
            for item in parse_objects(&listed.items) {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let item_ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
                match registry.delete::<K>(info, item_ns, name, &options).await {
                    Ok((body, _)) => deleted.push(body),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(respond(
                200,
                "application/json",
                list_json(info, &deleted, registry.store.current_revision()),
            ))
        }
        (Some(name), None, &Method::GET) if watch => {
            watch_response(state, info, ns, Some(name), &query, shape).await
        }
        (Some(name), None | Some("status"), &Method::GET) => object_response(
            200,
            registry.get(info, ns, name).await?,
            shape,
            info,
            &query,
            &[],
        ),
        (Some(name), sub @ (None | Some("status")), &Method::PUT) => {
            check_subresource(info, sub)?;
            let decoded =
                decode_write::<K>(registry, info, &body, content_type.as_deref(), &query)?;
            let written = registry
                .update(info, ns, name, decoded, sub.is_some(), query.dry_run()?)
                .await?;
            let code = if written.created { 201 } else { 200 };
            object_response(code, written.body, shape, info, &query, &written.warnings)
        }
        (Some(name), sub @ (None | Some("status")), &Method::PATCH) => {
            check_subresource(info, sub)?;
            let patch_type = patch_type(content_type.as_deref())?;
            let written = registry
                .patch::<K>(
                    info,
                    ns,
                    name,
                    &body,
                    patch_type,
                    query.field_validation()?,
                    sub.is_some(),
                    query.dry_run()?,
                )
                .await?;
            object_response(200, written.body, shape, info, &query, &written.warnings)
        }
        (Some(name), None, &Method::DELETE) => {
            let options = delete_options(&body, &query)?;
            // 200 whether the object is gone or only marked (graceful deletion, finalizers):
            // Kubernetes keeps 202 for orphanDependents=false, which nothing here sends.
            let (body, _gone) = registry.delete::<K>(info, ns, name, &options).await?;
            object_response(200, body, shape, info, &query, &[])
        }
        (Some(name), Some("binding"), &Method::POST) if info.kind == "Pod" => {
            let binding: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the Binding body is not valid JSON: {e}"))
            })?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Binding",
                        "",
                        name,
                        vec![crate::error::Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value".into(),
                            field: "target.name".into(),
                        }],
                    )
                })?;
            registry
                .bind_pod(info, ns.unwrap_or("default"), name, node)
                .await?;
            Ok(json_response(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Some(name), Some(sub @ ("exec" | "attach" | "log" | "portforward" | "proxy")), _)
            if info.kind == "Pod" =>
        {
            let pod: Pod = registry.get_typed(info, ns, name).await?;
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "pod {name} does not have a host assigned"
                )));
            }
            if sub == "log" && method == Method::GET {
                return crate::node_proxy::log(
                    registry,
                    state.node_client.get(),
                    &pod,
                    parts.uri.query(),
                )
                .await;
            }
            Err(ApiError::unavailable(format!("pods/{sub} is not served yet: it comes with the node's streaming server")))
        }
        (Some(_), Some(_), _)
            if target
                .subresource
                .is_some_and(|s| info.subresource(s).is_none()) =>
        {
            Err(ApiError::no_route())
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on this path of {}",
            info.qualified()
        ))),
    }
}

fn check_subresource(info: &ResourceInfo, sub: Option<&str>) -> Result<()> {
    match sub {
        Some(s) if info.subresource(s).is_none() => Err(ApiError::no_route()),
        _ => Ok(()),
    }
}

fn decode_write<K: ApiKind>(
    registry: &Registry,
    info: &ResourceInfo,
    body: &[u8],
    content_type: Option<&str>,
    query: &Query,
) -> Result<crate::registry::Decoded<K>> {
    let validation = query.field_validation()?;
    let media = media_type(content_type);
    if media == "application/vnd.kubernetes.protobuf" {
        if !matches!(info.kind, "Namespace" | "Secret") {
            return Err(ApiError::unsupported_media_type(&media));
        }
        let value = protobuf::decode(body, info.kind)
            .map_err(|e| ApiError::bad_request(format!("cannot decode the protobuf body: {e}")))?;
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
        return registry.decode(info, &bytes, BodyFormat::Decoded, validation);
    }
    registry.decode(info, body, body_format(content_type)?, validation)
}

async fn watch_response(
    state: &State,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
    shape: Shape,
) -> Result<Response<Body>> {
    let mut list = query.list_options(info)?;
    if let Some(name) = name {
        let selector = match query.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(existing) => format!("{existing},metadata.name={name}"),
            None => format!("metadata.name={name}"),
        };
        list.field_selector = FieldSelector::parse(&selector, info.plural)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let send_initial_events = query.flag("sendInitialEvents")?;
    if send_initial_events && query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![crate::error::Cause {
                reason: "FieldValueForbidden".into(),
                message: "sendInitialEvents requires resourceVersionMatch=NotOlderThan".into(),
                field: "resourceVersionMatch".into(),
            }],
        ));
    }
    let resource_version = match query
        .get("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0")
    {
        Some(rv) if !send_initial_events => Some(parse_revision(rv, "resourceVersion")?),
        _ => None,
    };
    list.exact_revision = None;
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "timeoutSeconds {t:?} is not a non-negative integer"
            ))
        })?),
        None => {
            // Kubernetes ends watches after a random 30-60 minutes so clients re-balance.
            let mut b = [0u8; 2];
            let _ = getrandom::fill(&mut b);
            Duration::from_secs(1800 + u64::from(u16::from_le_bytes(b)) % 1800)
        }
    };
    let options = WatchOptions {
        list,
        resource_version,
        send_initial_events,
        allow_bookmarks: query.flag("allowWatchBookmarks")?,
        timeout,
        bookmark_interval: Duration::from_secs(60),
    };
    let mut rx = watch::start(
        &state.registry,
        info,
        namespace.map(str::to_string),
        options,
    )
    .await?;
    let include = include_object(query)?;
    let (tx_frames, rx_frames) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let type_name = event.type_name();
            let object = match event {
                WatchEvent::Added(b) | WatchEvent::Modified(b) | WatchEvent::Deleted(b) => {
                    match shape {
                        Shape::Object => serde_json::from_slice(&b).unwrap_or(Value::Null),
                        Shape::Table => {
                            let object: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                            table_json(info, &[object], None, include)
                        }
                    }
                }
                WatchEvent::Bookmark {
                    revision,
                    initial_events_end,
                } => watch::bookmark_object(info, revision, initial_events_end),
                WatchEvent::Error(e) => e.to_status(),
            };
            let mut line = serde_json::to_vec(&json!({"type": type_name, "object": object}))
                .unwrap_or_default();
            line.push(b'\n');
            if tx_frames.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx_frames, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_tables_and_refuses_protobuf_only() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl_get)).expect("ok"), Shape::Table);
        assert_eq!(
            negotiate(Some("application/json, */*")).expect("ok"),
            Shape::Object
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).expect("ok"),
            Shape::Object
        );
        assert_eq!(negotiate(None).expect("ok"), Shape::Object);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"))
                .expect_err("406")
                .code,
            406
        );
    }

    #[test]
    fn routes_namespaced_and_cluster_paths() {
        let p = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
        let r = p("namespaces/default/pods/x/status");
        let t = route("", "v1", &r).expect("route");
        assert_eq!(
            (t.info.plural, t.namespace, t.name, t.subresource),
            ("pods", Some("default"), Some("x"), Some("status"))
        );
        let r = p("namespaces/foo/status");
        let t = route("", "v1", &r).expect("route");
        assert_eq!(
            (t.info.plural, t.namespace, t.name, t.subresource),
            ("namespaces", None, Some("foo"), Some("status"))
        );
        let r = p("namespaces/foo");
        let t = route("", "v1", &r).expect("route");
        assert_eq!((t.info.plural, t.name), ("namespaces", Some("foo")));
        let r = p("pods");
        assert_eq!(route("", "v1", &r).expect("route").namespace, None);
        let r = p("pods/x");
        assert!(
            route("", "v1", &r).is_err(),
            "a namespaced object needs its namespace"
        );
        let r = p("watch/namespaces/default/pods");
        assert!(route("", "v1", &r).expect("route").watch_path);
        let r = p("widgets");
        assert!(route("", "v1", &r).is_err());
    }

    #[test]
    fn delete_options_from_kubectl() {
        let q = Query::parse(None);
        let o = delete_options(
            br#"{"gracePeriodSeconds":0,"propagationPolicy":"Background"}"#,
            &q,
        )
        .expect("ok");
        assert_eq!(o.grace_period_seconds, Some(0));
        assert!(delete_options(br#"{"propagationPolicy":"Sideways"}"#, &q).is_err());
        assert!(delete_options(b"{nope", &q).is_err());
    }
}
