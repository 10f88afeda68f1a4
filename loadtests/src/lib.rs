//! What the load generators share: a client of vacd's HTTP API (bounded requests, errors that
//! name the request) and small helpers for its list responses.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// vacd's HTTP API at `base` (`http://127.0.0.1:8080`).
#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// `method path` as `token` (none if empty) with a JSON `body`; the JSON answer (`null` if
    /// there is none), or an error naming the request on any status but 2xx.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let what = format!("{method} {path}");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(REQUEST_TIMEOUT);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{what}: request"))?;
        let status = response.status();
        let answer = response
            .bytes()
            .await
            .with_context(|| format!("{what}: body"))?;
        if !status.is_success() {
            bail!("{what}: {status} {}", String::from_utf8_lossy(&answer));
        }
        Ok(serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    /// Logs `user` of the demo tenant in; its token.
    pub async fn login(&self, user: &str, password: &str) -> Result<String> {
        let body = json!({ "tenant": "demo", "username": user, "password": password });
        let reply = self.post("/api/v1/auth/login", "", body).await?;
        reply["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("login {user}: no token in {reply}"))
    }

    /// The id of the first row `path` lists.
    pub async fn id_of(&self, path: &str, token: &str) -> Result<i64> {
        let page = self.get(path, token).await?;
        page["items"][0]["id"]
            .as_i64()
            .with_context(|| format!("{path}: nothing"))
    }

    /// The websocket URL of `path`.
    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http", "ws", 1))
    }
}

/// One keep-alive HTTP/1.1 connection to vacd for load: requests go out one after another on
/// it, each with a ready-made body and authorization.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    host: hyper::header::HeaderValue,
}

impl Connection {
    /// Connects to `base` (`http://127.0.0.1:8080`).
    pub async fn open(base: &str) -> Result<Connection> {
        let authority = base
            .strip_prefix("http://")
            .with_context(|| format!("{base}: not an http:// address"))?
            .trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            host: hyper::header::HeaderValue::from_str(authority)?,
        })
    }

    /// `POST path` with the JSON `body`, authorized by `authorization` (`Bearer …`); the answer's
    /// body is read but not parsed, any status but 2xx is an error.
    pub async fn post(
        &mut self,
        path: &str,
        authorization: &hyper::header::HeaderValue,
        body: String,
    ) -> Result<()> {
        use http_body_util::BodyExt;
        use hyper::header;
        let request = hyper::Request::post(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, authorization)
            .header(header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(body.into()))?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .with_context(|| format!("POST {path}: no answer in {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("POST {path}"))?;
        if !answer.0.is_success() {
            bail!(
                "POST {path}: {} {}",
                answer.0,
                String::from_utf8_lossy(&answer.1)
            );
        }
        Ok(())
    }
}

/// A websocket to vacd.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket with a small read buffer: tungstenite zeroes the free part of its buffer
/// (128 KiB by default) before every read, which cost a generator more than its own work.
pub async fn connect(url: &str) -> Result<WebSocket> {
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("websocket {url}"))?;
    Ok(ws)
}

/// The items of a list response.
pub fn items(page: &Value) -> &[Value] {
    page["items"].as_array().map_or(&[], Vec::as_slice)
}

/// The `p` quantile (0…1, nearest rank) of ascending `sorted`; `None` if it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted
        .get((last as f64 * p.clamp(0.0, 1.0)).round() as usize)
        .copied()
}
