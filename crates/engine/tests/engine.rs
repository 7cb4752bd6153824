//! The engine driven as the PHP layer drives it, from this (non-Tokio) thread, with a real
//! WebSocket client on another thread. No PHP involved.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use surge_engine::{Config, Engine, Event, Handler, Payload, PushError};
use tokio_tungstenite::tungstenite::Message;

fn engine() -> Engine {
    let mut config = Config::default();
    config
        .apply("log_level", &surge_engine::Value::Str("off".into()))
        .unwrap();
    let engine = Engine::start(config, "127.0.0.1", 0, &[], None).expect("engine starts");
    for h in [Handler::Open, Handler::Message, Handler::Close] {
        engine.set_handler(h, true);
    }
    engine
}

fn next_event(engine: &Engine) -> Event {
    let mut batch = Vec::new();
    assert!(
        engine.recv(&mut batch, 1, Some(Duration::from_secs(5))),
        "no event within 5 s"
    );
    batch.pop().unwrap()
}

/// Runs an async client on its own thread and runtime, like a separate process would.
fn client<F, Fut>(f: F) -> std::thread::JoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future + 'static,
    Fut::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
}

#[test]
fn open_message_push_and_close_reach_the_right_places() {
    let engine = engine();
    let url = format!("ws://{}/chat?room=1", engine.local_addr());
    let c = client(move || async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        let pushed = ws.next().await.unwrap().unwrap();
        let closed = ws.next().await.unwrap().unwrap();
        (pushed, closed)
    });

    let fd = match next_event(&engine) {
        Event::Open { fd, request } => {
            assert_eq!(request.path, "/chat");
            assert_eq!(request.query, "room=1");
            fd
        }
        other => panic!("expected open, got {other:?}"),
    };
    assert!(engine.is_established(fd));
    match next_event(&engine) {
        Event::Message {
            fd: from,
            data,
            binary,
            ..
        } => {
            assert_eq!((from, &data[..], binary), (fd, &b"hello"[..], false));
        }
        other => panic!("expected message, got {other:?}"),
    }
    engine.push(fd, Payload::text("pushed")).unwrap();
    assert!(engine.disconnect(fd, 4001, "done"));
    assert!(
        !engine.is_established(fd),
        "closing connections are no longer established"
    );
    assert_eq!(
        engine.push(fd, Payload::text("late")),
        Err(PushError::Closed)
    );

    let (pushed, closed) = c.join().unwrap();
    assert_eq!(pushed, Message::text("pushed"));
    match closed {
        Message::Close(Some(frame)) => assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (4001, "done")
        ),
        other => panic!("expected a close frame, got {other:?}"),
    }
    match next_event(&engine) {
        Event::Close {
            fd: closed_fd,
            code,
            closed,
        } => {
            assert_eq!((closed_fd, code), (fd, 4001));
            assert!(closed.remote.ip().is_loopback() && closed.connect_time > 0);
        }
        other => panic!("expected close, got {other:?}"),
    }
    assert!(!engine.exists(fd));
    let stats = engine.stats();
    assert_eq!(
        (stats.messages_in, stats.messages_out, stats.connections),
        (1, 1, 0)
    );
}

#[test]
fn pushes_queued_together_arrive_in_order() {
    let engine = engine();
    let url = format!("ws://{}/", engine.local_addr());
    let c = client(move || async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 1000 {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                got.push(t.to_string());
            }
        }
        got
    });
    let Event::Open { fd, .. } = next_event(&engine) else {
        panic!("expected open")
    };
    for i in 0..1000 {
        engine.push(fd, Payload::text(&i.to_string())).unwrap();
    }
    let got = c.join().unwrap();
    assert_eq!(got, (0..1000).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn shutdown_closes_every_client_with_1001() {
    let engine = engine();
    let url = format!("ws://{}/", engine.local_addr());
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            client(move || async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                match ws.next().await.unwrap().unwrap() {
                    Message::Close(Some(frame)) => u16::from(frame.code),
                    other => panic!("expected close, got {other:?}"),
                }
            })
        })
        .collect();
    for _ in 0..5 {
        assert!(matches!(next_event(&engine), Event::Open { .. }));
    }
    engine.begin_shutdown(1001, "server shutting down");
    for c in clients {
        assert_eq!(c.join().unwrap(), 1001);
    }
}
