//! A test client of the supervisors' live feed `/ws/supervisor`: waits (bounded) for `floor`
//! frames that show what a test expects.

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::TestServer;

pub struct Feed {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Feed {
    pub async fn connect(s: &TestServer, token: &str) -> Feed {
        let url = format!(
            "{}/ws/supervisor?token={token}",
            s.base.replacen("http", "ws", 1)
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("feed connects");
        Feed { ws }
    }

    /// Waits for a `floor` frame that satisfies `matches`, at most [`WAIT`] in all (frames keep
    /// coming while the floor changes, so a bound per frame might never end the wait).
    ///
    /// [`WAIT`]: super::console::WAIT
    pub async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + super::console::WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no floor frame with {what} within the wait"))
                .expect("feed open")
                .expect("frame");
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                assert_eq!(frame["type"], "floor");
                if matches(&frame) {
                    return frame;
                }
            }
        }
    }
}

impl Feed {
    /// Waits until the server closes the feed; its close code.
    pub async fn closed(&mut self) -> Option<u16> {
        use futures_util::StreamExt;
        loop {
            let message = tokio::time::timeout(super::console::WAIT, self.ws.next())
                .await
                .expect("the feed closes within the wait");
            match message {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }
}

pub fn queue_of(frame: &Value, queue: i64) -> Option<&Value> {
    frame["queues"]
        .as_array()?
        .iter()
        .find(|q| q["queue"] == queue)
}

pub fn agent_of(frame: &Value, agent: i64) -> Option<&Value> {
    frame["agents"]
        .as_array()?
        .iter()
        .find(|a| a["agent"] == agent)
}
