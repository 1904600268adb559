//! Against a throwaway nats-server (these are the crate's only unit tests that need one).

use std::time::Duration;

use nats::jetstream::StreamConfig;

use super::*;
use crate::dev::NatsServer;

fn server_with_stream() -> (NatsServer, nats::Connection) {
    let server = NatsServer::start().unwrap();
    let nc = crate::nats_io::connect(&server.url(), "publisher-test").unwrap();
    let js = nats::jetstream::new(nc.clone());
    js.add_stream(StreamConfig {
        name: "PUBTEST".into(),
        subjects: vec!["pub.>".into()],
        duplicate_window: Duration::from_secs(60).as_nanos() as i64,
        ..Default::default()
    })
    .unwrap();
    (server, nc)
}

#[test]
fn a_bounded_window_publishes_everything_and_same_ids_are_duplicates() {
    let (_server, nc) = server_with_stream();
    let mut p = Publisher::new(&nc, 8, Duration::from_secs(2), 3).unwrap();
    for i in 0..100u64 {
        p.publish(
            i,
            "pub.a",
            &format!("id-{i}"),
            HeaderMap::new(),
            b"x".to_vec(),
        );
        assert!(
            p.outstanding() <= 8,
            "the window bounds what is outstanding"
        );
    }
    let mut done = p.finish();
    done.sort_by_key(|c| c.tag);
    assert_eq!(done.len(), 100);
    assert!(done
        .iter()
        .all(|c| matches!(&c.result, Ok(a) if !a.duplicate)));
    // A re-send with the same Nats-Msg-Id is stored once.
    p.publish(7, "pub.a", "id-7", HeaderMap::new(), b"x".to_vec());
    let again = p.finish();
    assert!(
        matches!(&again[0].result, Ok(a) if a.duplicate),
        "{again:?}"
    );
    let info = nats::jetstream::new(nc).stream_info("PUBTEST").unwrap();
    assert_eq!(info.state.messages, 100);
}

#[test]
fn a_compare_and_set_goes_without_an_id_and_a_resend_is_refused_not_stored_twice() {
    let (_server, nc) = server_with_stream();
    let mut p = Publisher::new(&nc, 4, Duration::from_secs(2), 3).unwrap();
    for tag in 0..2 {
        // The same write twice, as a re-send after a lost answer would be.
        p.publish_compare_and_set(
            tag,
            "pub.cas",
            crate::nats_io::cas_headers(0),
            b"x".to_vec(),
        );
    }
    let mut done = p.finish();
    done.sort_by_key(|c| c.tag);
    assert!(matches!(&done[0].result, Ok(a) if a.seq == 1), "{done:?}");
    assert!(
        matches!(&done[1].result, Err(PublishError::Rejected(e)) if e.contains("wrong last sequence")),
        "{done:?}"
    );
    // Beside it, a publish with an id, whose id the stream keeps with the message.
    p.publish(2, "pub.id", "id-2", HeaderMap::new(), b"y".to_vec());
    assert!(p.finish()[0].result.is_ok());
    let js = nats::jetstream::new(nc);
    assert_eq!(js.stream_info("PUBTEST").unwrap().state.messages, 2);
    let stored_id = |seq| {
        let headers = js
            .get_message("PUBTEST", seq)
            .unwrap()
            .headers
            .unwrap_or_default();
        headers.get(header::MSG_ID).cloned()
    };
    assert_eq!(
        stored_id(1),
        None,
        "the compare-and-set carries no Nats-Msg-Id"
    );
    assert_eq!(stored_id(2).as_deref(), Some("id-2"));
}

#[test]
fn a_subject_no_stream_captures_fails_after_its_attempts() {
    let (_server, nc) = server_with_stream();
    let mut p = Publisher::new(&nc, 4, Duration::from_secs(2), 2).unwrap();
    p.publish(1, "elsewhere.x", "id-1", HeaderMap::new(), b"x".to_vec());
    let done = p.finish();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].result,
        Err(PublishError::NoStream("elsewhere.x".into()))
    );
}

#[test]
fn an_unanswered_publish_times_out_after_its_attempts() {
    let (mut server, nc) = server_with_stream();
    server.kill();
    let mut p = Publisher::new(&nc, 4, Duration::from_millis(150), 2).unwrap();
    p.publish(1, "pub.a", "id-1", HeaderMap::new(), b"x".to_vec());
    let done = p.finish();
    assert_eq!(done.len(), 1);
    assert!(
        matches!(
            done[0].result,
            Err(PublishError::Timeout { attempts: 2 }) | Err(PublishError::Io(_))
        ),
        "{:?}",
        done[0].result
    );
}

#[test]
fn replies_read_as_acks_errors_or_unreadable() {
    let ack = |json: &str| serde_json::from_str::<AckReply>(json).unwrap();
    let ok = ack(r#"{"stream":"S","seq":7,"duplicate":true,"domain":"x"}"#);
    assert!(ok.error.is_none());
    assert_eq!(
        ok.ack(),
        Some(Ack {
            stream: "S".into(),
            seq: 7,
            duplicate: true
        })
    );
    let err = ack(r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence"}}"#);
    assert_eq!(err.error.as_ref().map(|e| e.code), Some(400));
    assert_eq!(err.ack(), None);
    // An ack without its sequence is no ack.
    assert_eq!(ack(r#"{"stream":"S"}"#).ack(), None);
}
