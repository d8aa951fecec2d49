//! The Avro contract: schemas parse, every kind round-trips, old and new writers stay readable,
//! and bad bytes become errors, never panics.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Schema, Writer};
use omnistitch_codec::container::ContainerWriter;
use omnistitch_codec::datum::{encode_input, OutputKind};
use omnistitch_codec::{ContainerReader, Contract, InputDecoder, OutputEncoder};
use omnistitch_model::output::*;
use omnistitch_model::wire::*;
use omnistitch_model::{Channel, Direction, EventKind, EventTime, IdentifierKind, Survey};
use proptest::prelude::*;

fn sample(channel: Channel, kind: EventKind, n: usize) -> WireEvent {
    let survey =
        (kind == EventKind::SurveyResponse).then_some(WireSurvey { csat: Some(2), nps: Some(6), ces: Some(5) });
    match channel {
        Channel::Email => WireEvent::Email(EmailEvent {
            tenant: "acme".into(),
            event_id: format!("EVT-{n}").into(),
            event_time: 1_767_571_200_000 + n as i64,
            direction: Direction::Inbound,
            kind,
            case_id: Some("C-1".into()),
            agent_id: None,
            account_id: Some("AC-9".into()),
            text: Some("Zoë's router is still down 😞".into()),
            sentiment: Some(-0.6),
            survey,
            from: "Zoë <zoe@example.net>".into(),
            to: vec!["support@acme.example".into()],
            cc: vec![],
            subject: Some("Router".into()),
            message_id: Some(format!("<m{n}@example.net>").into()),
            in_reply_to: None,
        }),
        Channel::Chat => WireEvent::Chat(ChatEvent {
            tenant: "acme".into(),
            event_id: format!("EVT-{n}").into(),
            event_time: 1_767_571_200_000 + n as i64,
            direction: Direction::Inbound,
            kind,
            case_id: None,
            agent_id: Some("agent-7".into()),
            account_id: None,
            text: None,
            sentiment: None,
            survey,
            session_id: "S-1".into(),
            visitor_id: Some("v-1".into()),
            customer_email: Some("zoe@example.net".into()),
            customer_phone: None,
        }),
        Channel::Phone => WireEvent::Phone(PhoneEvent {
            tenant: "acme".into(),
            event_id: format!("EVT-{n}").into(),
            event_time: 1_767_571_200_000 + n as i64,
            direction: Direction::Outbound,
            kind,
            case_id: Some("C-1".into()),
            agent_id: Some("agent-7".into()),
            account_id: Some("AC-9".into()),
            text: None,
            sentiment: None,
            survey,
            call_id: "K-1".into(),
            caller: "+18005550100".into(),
            callee: "(415) 555-0134".into(),
            queue_wait_ms: Some(95_000),
            duration_ms: Some(300_000),
            transfers: Some(2),
            customer_line_type: Some("mobile".into()),
        }),
        Channel::Social => WireEvent::Social(SocialEvent {
            tenant: "acme".into(),
            event_id: format!("EVT-{n}").into(),
            event_time: 1_767_571_200_000 + n as i64,
            direction: Direction::Inbound,
            kind,
            case_id: None,
            agent_id: None,
            account_id: None,
            text: Some("worst service ever".into()),
            sentiment: None,
            survey,
            platform: "x".into(),
            handle: "@ZoeQ".into(),
            post_id: Some("P-1".into()),
            in_reply_to_post: None,
        }),
    }
}

/// Every (channel, kind) pair the contract allows.
fn all_samples() -> Vec<WireEvent> {
    let mut out = Vec::new();
    for channel in Channel::ALL {
        for kind in EventKind::ALL {
            if kind.fits(channel) {
                out.push(sample(channel, kind, out.len()));
            }
        }
    }
    out
}

#[test]
fn every_schema_parses() {
    let c = Contract::get();
    for (channel, schema) in Channel::ALL.iter().zip(&c.inputs) {
        assert_eq!(omnistitch_codec::contract::channel_of(schema), Some(*channel));
    }
    for s in [&c.timeline_entry, &c.profile, &c.profile_merge, &c.dead_letter, &c.intervention] {
        assert!(matches!(s, Schema::Record(_)));
    }
    for (i, kind) in OutputKind::ALL.into_iter().enumerate() {
        assert_eq!(kind as usize, i, "OutputKind::ALL is in declaration order");
        let parsed = Schema::parse_str(kind.avsc()).unwrap();
        assert_eq!(parsed.canonical_form(), c.output(kind).canonical_form(), "{kind:?}");
        assert_eq!(omnistitch_codec::contract::channel_of(c.output(kind)), None);
    }
}

#[test]
fn a_moments_intervention_encodes_as_an_intervention() {
    use omnistitch_moments::{Action, Evidence, Intervention, MomentType, Priority};
    let c = Contract::get();
    let enc = OutputEncoder::new();
    let full = Intervention {
        intervention_id: Intervention::derive_id("acme", MomentType::ChannelHop, "e2"),
        key_event_id: "e2".into(),
        tenant: "acme".into(),
        profile_id: "6f1c0bb4-66f5-5b1e-9a57-1b1bd2b8f1c3".into(),
        moment_type: MomentType::ChannelHop,
        priority: Priority::High,
        detected_at: EventTime(1_767_571_200_000),
        reason: "chat, then a call within 40 minutes on an open case".into(),
        case_id: Some("C-1".into()),
        evidence: vec![
            Evidence { event_id: "e1".into(), channel: Channel::Chat },
            Evidence { event_id: "e2".into(), channel: Channel::Phone },
        ],
        recommended_action: Action::WarmHandoff,
        recommended_channel: Channel::Phone,
        expires_at: EventTime(1_767_657_600_000),
    };
    let bare = Intervention { case_id: None, evidence: vec![], priority: Priority::Unknown, ..full.clone() };
    for record in [full, bare] {
        let bytes = enc.encode(OutputKind::Intervention, &record).unwrap();
        assert_eq!(read_back::<Intervention>(&c.intervention, &bytes), record);
        // Not readable as any other output record: the writer really is the intervention's.
        assert!(enc.encode(OutputKind::ProfileMerge, &record).is_err());
    }
}

#[test]
fn every_kind_round_trips_as_a_datum_and_in_containers() {
    let decoder = InputDecoder::new();
    let samples = all_samples();
    assert!(samples.len() >= 20, "every kind of every channel: {}", samples.len());
    for ev in &samples {
        let bytes = encode_input(ev).unwrap();
        assert_eq!(&decoder.decode(ev.channel(), &bytes).unwrap(), ev);
        ev.clone().into_event(omnistitch_model::Tenant::new).expect("samples are valid events");
    }
    for deflate in [false, true] {
        for channel in Channel::ALL {
            let mut w = ContainerWriter::new(channel, Vec::new(), deflate).unwrap();
            let mine: Vec<_> = samples.iter().filter(|e| e.channel() == channel).collect();
            for ev in &mine {
                w.append(ev).unwrap();
            }
            let bytes = w.finish().unwrap();
            let r = ContainerReader::new(&bytes[..]).unwrap();
            assert_eq!(r.channel(), channel);
            let back: Vec<WireEvent> = r.map(|i| i.unwrap().1).collect();
            assert_eq!(back.iter().collect::<Vec<_>>(), mine);
        }
    }
}

fn read_back<T: serde::de::DeserializeOwned>(schema: &Schema, bytes: &[u8]) -> T {
    let r = GenericDatumReader::builder(schema).build().unwrap();
    r.read_deser(&mut &bytes[..]).unwrap()
}

#[test]
fn output_records_round_trip() {
    let c = Contract::get();
    let enc = OutputEncoder::new();
    let id = IdentifierRecord { kind: IdentifierKind::Phone, value: "+14155550134".into() };
    let timeline = TimelineRecord {
        tenant: "acme".into(),
        profile_id: "p".into(),
        thread_id: "case:C-1".into(),
        event: NormalizedEvent {
            event_id: "e".into(),
            event_time: EventTime(1_767_571_200_000),
            channel: omnistitch_model::Channel::Phone,
            direction: Direction::Inbound,
            kind: EventKind::SurveyResponse,
            case_id: Some("C-1".into()),
            agent_id: None,
            text: None,
            sentiment: Some(0.5),
            survey: Some(Survey { csat: Some(1), nps: None, ces: Some(6) }),
            queue_wait_ms: Some(1),
            duration_ms: None,
            transfers: Some(0),
            platform: None,
            subject: None,
        },
        identifiers: vec![MatchedIdentifier { identifier: id.clone(), outcome: MatchOutcome::Shared }],
        absorbed_thread_id: Some("chat:S-1".into()),
    };
    let bytes = enc.encode(OutputKind::TimelineEntry, &timeline).unwrap();
    assert_eq!(read_back::<TimelineRecord>(&c.timeline_entry, &bytes), timeline);
    let profile = ProfileRecord {
        tenant: "acme".into(),
        profile_id: "p".into(),
        identifiers: vec![id.clone()],
        merged_from: vec!["q".into()],
        first_seen: EventTime(1),
        last_seen: EventTime(2),
        event_count: 3,
    };
    let bytes = enc.encode(OutputKind::Profile, &profile).unwrap();
    assert_eq!(read_back::<ProfileRecord>(&c.profile, &bytes), profile);
    let merge = MergeRecord {
        tenant: "acme".into(),
        survivor_id: "p".into(),
        absorbed_id: "q".into(),
        event_id: "e".into(),
        event_time: EventTime(5),
        survivor_identifier: id.clone(),
        absorbed_identifier: IdentifierRecord { kind: IdentifierKind::Email, value: "a@b.co".into() },
    };
    let bytes = enc.encode(OutputKind::ProfileMerge, &merge).unwrap();
    assert_eq!(read_back::<MergeRecord>(&c.profile_merge, &bytes), merge);
    let dead = DeadLetterRecord {
        source: "email.avro".into(),
        partition: -1,
        offset: 7,
        reason_code: "avro_decode".into(),
        reason: "truncated".into(),
        payload: vec![0, 255, 3],
    };
    let bytes = enc.encode(OutputKind::DeadLetter, &dead).unwrap();
    assert_eq!(read_back::<DeadLetterRecord>(&c.dead_letter, &bytes), dead);
}

/// A container written by another producer with `schema_json` and JSON records.
fn foreign_container(schema_json: &str, records: &[serde_json::Value]) -> Vec<u8> {
    let schema = Schema::parse_str(schema_json).unwrap();
    let mut w = Writer::new(&schema, Vec::new()).unwrap();
    for r in records {
        let v = Value::try_from(r.clone()).unwrap().resolve(&schema).unwrap();
        w.append_value(v).unwrap();
    }
    w.into_inner().unwrap()
}

#[test]
fn a_newer_producer_with_new_fields_and_kinds_stays_readable() {
    let mut schema: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::CHAT_EVENT_AVSC).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.push(serde_json::json!({"name": "language", "type": ["null", "string"], "default": null}));
    let kind = fields.iter_mut().find(|f| f["name"] == "kind").unwrap();
    kind["type"]["symbols"].as_array_mut().unwrap().push("CO_BROWSE_STARTED".into());
    let record = serde_json::json!({
        "tenant": "acme", "event_id": "n1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
        "kind": "CO_BROWSE_STARTED", "case_id": null, "agent_id": null, "account_id": null, "text": null,
        "sentiment": null, "survey": null, "session_id": "S", "visitor_id": "v", "customer_email": null,
        "customer_phone": null, "language": "fr"
    });
    let bytes = foreign_container(&schema.to_string(), &[record]);
    let mut r = ContainerReader::new(&bytes[..]).unwrap();
    let (_, ev) = r.next().unwrap().unwrap();
    let WireEvent::Chat(chat) = ev else { panic!("chat") };
    assert_eq!(chat.kind, EventKind::Unknown);
    assert_eq!(chat.session_id, "S");
}

#[test]
fn an_older_producer_without_optional_fields_stays_readable() {
    let mut schema: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::PHONE_EVENT_AVSC).unwrap();
    let keep = ["tenant", "event_id", "event_time", "direction", "kind", "call_id", "caller", "callee"];
    schema["fields"].as_array_mut().unwrap().retain(|f| keep.contains(&f["name"].as_str().unwrap()));
    let record = serde_json::json!({
        "tenant": "acme", "event_id": "o1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
        "kind": "CALL_STARTED", "call_id": "K", "caller": "4155550134", "callee": "8005550100"
    });
    let bytes = foreign_container(&schema.to_string(), &[record]);
    let (_, ev) = ContainerReader::new(&bytes[..]).unwrap().next().unwrap().unwrap();
    let WireEvent::Phone(p) = ev else { panic!("phone") };
    assert_eq!((p.queue_wait_ms, p.case_id), (None, None));
}

#[test]
fn a_schema_decoder_reads_bundled_and_other_writer_schemas() {
    use omnistitch_codec::contract::intern;
    use omnistitch_codec::SchemaDecoder;
    for ev in all_samples() {
        let d = SchemaDecoder::bundled(ev.channel());
        assert!(d.is_bundled());
        assert_eq!(d.channel(), ev.channel());
        let bytes = encode_input(&ev).unwrap();
        assert_eq!(d.decode(&bytes).unwrap(), ev);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(d.decode(&longer).unwrap_err().code(), "avro_decode", "trailing bytes");
    }
    // The bundled schema without its docs is the bundled schema (same canonical form).
    let mut bare: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::EMAIL_EVENT_AVSC).unwrap();
    bare.as_object_mut().unwrap().remove("doc");
    let bare = intern(Schema::parse_str(&bare.to_string()).unwrap());
    assert!(SchemaDecoder::new(Channel::Email, bare).unwrap().is_bundled());
    // An older phone schema without the optional fields: resolved to the bundled record.
    let mut old: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::PHONE_EVENT_AVSC).unwrap();
    let keep = ["tenant", "event_id", "event_time", "direction", "kind", "call_id", "caller", "callee"];
    old["fields"].as_array_mut().unwrap().retain(|f| keep.contains(&f["name"].as_str().unwrap()));
    let old = intern(Schema::parse_str(&old.to_string()).unwrap());
    let d = SchemaDecoder::new(Channel::Phone, old).unwrap();
    assert!(!d.is_bundled());
    let record = serde_json::json!({
        "tenant": "acme", "event_id": "o1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
        "kind": "CALL_STARTED", "call_id": "K", "caller": "4155550134", "callee": "8005550100"
    });
    let value = Value::try_from(record).unwrap().resolve(old).unwrap();
    let bytes = GenericDatumWriter::builder(old).build().unwrap().write_value_to_vec(value).unwrap();
    let WireEvent::Phone(p) = d.decode(&bytes).unwrap() else { panic!("phone") };
    assert_eq!((p.call_id.as_str(), p.queue_wait_ms, p.case_id), ("K", None, None));
    assert!(d.decode(&bytes[..bytes.len() - 1]).is_err());
    // A schema of another channel or an output record is refused up front.
    for (channel, schema) in [(Channel::Chat, old), (Channel::Email, &Contract::get().profile)] {
        let e = SchemaDecoder::new(channel, schema).unwrap_err();
        assert_eq!(e.code(), "unknown_schema", "{e}");
    }
}

/// A later or differently typed version of an input record, as a registry or a container file
/// may hand over, is read by Avro's resolution rules: a new enum field and a new nullable
/// record field with values are skipped; int to long, float to double, bytes to string and a
/// plain value into a nullable union are promoted. A writer the bundled record cannot read is
/// refused up front.
#[test]
fn compatible_writers_resolve_to_the_bundled_record() {
    use omnistitch_codec::contract::intern;
    use omnistitch_codec::SchemaDecoder;
    let mut w: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::SOCIAL_EVENT_AVSC).unwrap();
    let fields = w["fields"].as_array_mut().unwrap();
    for f in fields.iter_mut() {
        match f["name"].as_str().unwrap() {
            "event_time" => f["type"] = serde_json::json!("int"),
            "sentiment" => f["type"] = serde_json::json!(["null", "float"]),
            "post_id" => {
                f["type"] = serde_json::json!("string");
                f.as_object_mut().unwrap().remove("default");
            }
            "handle" => f["type"] = serde_json::json!("bytes"),
            _ => {}
        }
    }
    fields.push(
        serde_json::json!({"name": "mood", "type": {"type": "enum", "name": "Mood", "symbols": ["CALM", "ANGRY"]}}),
    );
    fields.push(serde_json::json!({"name": "geo", "type": ["null", {"type": "record", "name": "Geo", "fields": [{"name": "lat", "type": "double"}]}], "default": null}));
    let writer = intern(Schema::parse_str(&w.to_string()).unwrap());
    let d = SchemaDecoder::new(Channel::Social, writer).unwrap();
    assert!(!d.is_bundled());
    let none = || Value::Union(0, Box::new(Value::Null));
    let some = |v: Value| Value::Union(1, Box::new(v));
    let kind = EventKind::ALL.iter().position(|k| *k == EventKind::SocialPost).unwrap() as u32;
    let value = Value::Record(vec![
        ("tenant".into(), Value::String("acme".into())),
        ("event_id".into(), Value::String("s1".into())),
        ("event_time".into(), Value::Int(1_700_000)),
        ("direction".into(), Value::Enum(0, "INBOUND".into())),
        ("kind".into(), Value::Enum(kind, "SOCIAL_POST".into())),
        ("case_id".into(), none()),
        ("agent_id".into(), none()),
        ("account_id".into(), none()),
        ("text".into(), some(Value::String("slow again".into()))),
        ("sentiment".into(), some(Value::Float(-0.5))),
        ("survey".into(), none()),
        ("platform".into(), Value::String("x".into())),
        ("handle".into(), Value::Bytes(b"@jo".to_vec())),
        ("post_id".into(), Value::String("p1".into())),
        ("in_reply_to_post".into(), none()),
        ("mood".into(), Value::Enum(1, "ANGRY".into())),
        ("geo".into(), some(Value::Record(vec![("lat".into(), Value::Double(48.1))]))),
    ]);
    assert!(value.validate(writer), "the test record fits its writer schema");
    let bytes = GenericDatumWriter::builder(writer).build().unwrap().write_value_to_vec(value).unwrap();
    let WireEvent::Social(e) = d.decode(&bytes).unwrap() else { panic!("social") };
    assert_eq!(
        (e.event_time, e.sentiment, e.handle.as_str(), e.post_id.as_deref()),
        (1_700_000, Some(-0.5), "@jo", Some("p1"))
    );
    // A writer whose required field the bundled record cannot take (a record where a string
    // goes) is refused when the schema is met, not record by record.
    let mut bad: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::SOCIAL_EVENT_AVSC).unwrap();
    for f in bad["fields"].as_array_mut().unwrap() {
        if f["name"] == "platform" {
            f["type"] = serde_json::json!({"type": "record", "name": "P", "fields": [{"name": "n", "type": "string"}]});
        }
    }
    let bad = intern(Schema::parse_str(&bad.to_string()).unwrap());
    assert_eq!(SchemaDecoder::new(Channel::Social, bad).unwrap_err().code(), "unknown_schema");
}

#[test]
fn a_corrupt_record_costs_its_block_and_reading_goes_on() {
    let schema = Contract::get().input(Channel::Email);
    let mut w = Writer::new(schema, Vec::new()).unwrap();
    for n in 0..3 {
        if let WireEvent::Email(e) = sample(Channel::Email, EventKind::Message, n) {
            w.append_ser(e).unwrap();
        }
        w.flush().unwrap(); // one block per record
    }
    let mut bytes = w.into_inner().unwrap();
    // Make the length prefix of the second record's tenant negative.
    let at = bytes.windows(5).enumerate().filter(|(_, w)| w == b"EVT-1").map(|(i, _)| i).next().unwrap();
    let tenant_len = at - 1 - 5; // "acme" (4 bytes + its length byte) precedes event_id's length byte
    bytes[tenant_len] = 0x01;
    let items: Vec<_> = ContainerReader::new(&bytes[..]).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    let bad = items[1].as_ref().unwrap_err();
    assert_eq!((bad.index, bad.error.code()), (1, "avro_decode"));
    assert!(!bad.payload.is_empty());
}

/// A file of three one-record blocks, `codec` compressing them, and the offsets where each
/// block's record count is (the byte after each sync marker).
fn three_blocks(codec: apache_avro::Codec) -> (Vec<u8>, Vec<usize>) {
    let schema = Contract::get().input(Channel::Email);
    let mut w = Writer::with_codec(schema, Vec::new(), codec).unwrap();
    for n in 0..3 {
        if let WireEvent::Email(e) = sample(Channel::Email, EventKind::Message, n) {
            w.append_ser(e).unwrap();
        }
        w.flush().unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let sync = bytes[bytes.len() - 16..].to_vec();
    let counts: Vec<usize> =
        bytes.windows(16).enumerate().filter(|(_, w)| *w == &sync[..]).map(|(i, _)| i + 16).collect();
    (bytes, counts[..3].to_vec())
}

/// A file of one block of `records` email records (up to a mebibyte), with sync `marker`.
fn one_block_of(records: usize, marker: [u8; 16]) -> Vec<u8> {
    let mut w = Writer::builder()
        .schema(Contract::get().input(Channel::Email))
        .writer(Vec::new())
        .marker(marker)
        .block_size(1 << 20)
        .build()
        .unwrap();
    for n in 0..records {
        if let WireEvent::Email(e) = sample(Channel::Email, EventKind::Message, n) {
            w.append_ser(e).unwrap();
        }
    }
    w.into_inner().unwrap()
}

/// A block whose count lies (no records in a block of bytes, more records than bytes), or whose
/// data does not decompress, is one bad record; the blocks after it are read.
#[test]
fn a_bad_block_costs_itself_and_reading_goes_on() {
    let outcome = |bytes: &[u8]| -> Vec<Result<u64, &'static str>> {
        ContainerReader::new(bytes).unwrap().map(|i| i.map(|(n, _)| n).map_err(|b| b.error.code())).collect()
    };
    let (bytes, counts) = three_blocks(apache_avro::Codec::Null);
    assert_eq!(bytes[counts[1]], 2, "one record: zigzag 1");
    let mut none = bytes.clone();
    none[counts[1]] = 0;
    assert_eq!(outcome(&none), [Ok(0), Err("container_corrupt"), Ok(1)]);
    let mut many = bytes.clone();
    many[counts[1]] = 0x7e; // 63 records in fewer bytes? the record is longer: read, then one fails
    let got = outcome(&many);
    assert_eq!((got.len(), got[0], got[2]), (4, Ok(0), Err("avro_decode")));
    assert_eq!(got[3], Ok(64), "the third block's record, after the 63 the second claimed");
    // Two records in a block that claims one: the second is reported, not dropped.
    let marker: [u8; 16] = bytes[bytes.len() - 16..].try_into().unwrap();
    let mut two = one_block_of(2, marker);
    let sync = two[two.len() - 16..].to_vec();
    let count = two.windows(16).position(|w| w == &sync[..]).unwrap() + 16;
    assert_eq!(two[count], 4, "two records: zigzag 2");
    two[count] = 2;
    assert_eq!(outcome(&two), [Ok(0), Err("container_corrupt")]);
    // The bad bytes take a position: a block after them starts at the next.
    let mut then = two.clone();
    then.extend_from_slice(&bytes[counts[2]..]);
    let items: Vec<_> =
        ContainerReader::new(&then[..]).unwrap().map(|i| i.map(|(n, _)| n).map_err(|b| b.index)).collect();
    assert_eq!(items, [Ok(0), Err(1), Ok(2)]);
    // A bad block's dead letter keeps its first 64 KiB, not up to 256 MiB.
    let mut big = one_block_of(2_000, marker);
    // The first record's tenant length made negative: the rest of the block is one bad record.
    let at = big.windows(5).position(|w| w == b"EVT-0").unwrap();
    big[at - 1 - 5] = 0x01;
    let bad: Vec<_> = ContainerReader::new(&big[..]).unwrap().filter_map(Result::err).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].payload.len(), 64 << 10, "of a block of {} bytes", big.len());
    // A file cut short is a damaged container, not a read error.
    let cut = &bytes[..bytes.len() - 100];
    assert_eq!(outcome(cut).last(), Some(&Err("container_corrupt")));
    assert_eq!(ContainerReader::new(&b""[..]).err().map(|e| e.code()), Some("container_corrupt"));
    // A size that lies (the block read runs into the next): its marker is found inside what was
    // read, the block is lost, and reading resumes right after the marker.
    let mut size = bytes.clone();
    // The size's first byte (its low bits): a bigger size, in as many bytes.
    assert!(size[counts[0] + 1] & 0x7f < 0x60, "room in the size's low bits");
    size[counts[0] + 1] += 20;
    assert_eq!(outcome(&size), [Err("container_corrupt"), Ok(1), Ok(2)]);
    // A damaged marker: the next marker found ends the following block, which is passed over
    // with it (both in one dead letter); the block after is read.
    let mut marker = bytes.clone();
    marker[counts[1] - 3] ^= 0xff;
    assert_eq!(outcome(&marker), [Err("container_corrupt"), Ok(1)]);
    // Snappy, the codec Spark writes by default, is read.
    let (snappy, _) = three_blocks(apache_avro::Codec::Snappy);
    assert_eq!(outcome(&snappy), [Ok(0), Ok(1), Ok(2)]);
    let (mut deflated, counts) = three_blocks(apache_avro::Codec::Deflate(Default::default()));
    // The first block's compressed data, garbled (its framing intact).
    let size_len = deflated[counts[0] + 1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let data = counts[0] + 1 + size_len + 2;
    for b in &mut deflated[data..data + 8] {
        *b = 0xff;
    }
    assert_eq!(outcome(&deflated), [Err("container_corrupt"), Ok(1), Ok(2)]);
}

#[test]
fn truncated_and_mistyped_datums_are_errors() {
    let decoder = InputDecoder::new();
    let bytes = encode_input(&sample(Channel::Social, EventKind::Review, 0)).unwrap();
    for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
        assert_eq!(decoder.decode(Channel::Social, &bytes[..cut]).unwrap_err().code(), "avro_decode", "cut {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decoder.decode(Channel::Social, &longer).is_err(), "trailing bytes");
    // Social bytes read as a phone record: wrong types somewhere.
    assert!(decoder.decode(Channel::Phone, &bytes).is_err());
    // Invalid UTF-8 inside a string.
    let mut bad_utf8 = bytes.clone();
    let pos = bad_utf8.windows(4).position(|w| w == b"acme").unwrap();
    bad_utf8[pos] = 0xff;
    assert_eq!(decoder.decode(Channel::Social, &bad_utf8).unwrap_err().code(), "avro_decode");
}

#[test]
fn the_specialised_decoder_agrees_with_apache_avro_on_every_kind() {
    let decoder = InputDecoder::new();
    for ev in all_samples() {
        let bytes = encode_input(&ev).unwrap();
        let fast = decoder.decode(ev.channel(), &bytes).unwrap();
        let generic = omnistitch_codec::datum::decode_generic(ev.channel(), &bytes).unwrap();
        assert_eq!(fast, generic);
        assert_eq!(fast, ev);
    }
}

proptest! {
    /// On damaged records the specialised decoder and apache-avro accept and reject the same
    /// bytes, and agree on what they accept.
    #[test]
    fn the_specialised_decoder_and_apache_avro_agree_on_damaged_records(
        sample in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let samples = all_samples();
        let ev = &samples[sample.index(samples.len())];
        let mut bytes = encode_input(ev).unwrap();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let fast = InputDecoder::new().decode(ev.channel(), &bytes);
        let generic = omnistitch_codec::datum::decode_generic(ev.channel(), &bytes);
        prop_assert_eq!(fast.is_ok(), generic.is_ok(), "fast {:?} generic {:?}", fast, generic);
        if let (Ok(a), Ok(b)) = (fast, generic) {
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    /// No byte string panics the decoders (a third of them start as container files do, so
    /// that the container reader goes past its magic).
    #[test]
    fn arbitrary_bytes_never_panic(
        magic in prop_oneof![Just(b"Obj\x01".to_vec()), Just(vec![]), Just(vec![])],
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let bytes = [magic, tail].concat();
        let decoder = InputDecoder::new();
        for channel in Channel::ALL {
            let _ = decoder.decode(channel, &bytes);
            let _ = omnistitch_codec::jsonl::decode_line(channel, &bytes);
        }
        if let Ok(r) = ContainerReader::new(&bytes[..]) {
            for _ in r {}
        }
    }
}

#[test]
fn a_header_block_count_of_i64_min_is_refused_not_negated() {
    // "Obj\x01", then a metadata block count zig-zag encoded as u64::MAX: i64::MIN.
    let mut bytes = b"Obj\x01".to_vec();
    bytes.extend_from_slice(&[0xff; 9]);
    bytes.push(0x01);
    let err = ContainerReader::new(&bytes[..]).err().expect("refused");
    assert_eq!(err.code(), "container_corrupt", "{err}");
}

#[test]
fn a_container_whose_schema_nests_without_end_is_refused() {
    let mut schema: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::CHAT_EVENT_AVSC).unwrap();
    let nested = serde_json::json!({"name": "x", "default": null, "type": ["null",
        {"type": "record", "name": "N", "fields": [{"name": "n", "type": ["null", "N"]}]}]});
    schema["fields"].as_array_mut().unwrap().push(nested);
    let record = serde_json::json!({
        "tenant": "acme", "event_id": "r1", "event_time": 1_767_571_200_000i64, "direction": "INBOUND",
        "kind": "MESSAGE", "case_id": null, "agent_id": null, "account_id": null, "text": null,
        "sentiment": null, "survey": null, "session_id": "S", "visitor_id": "v", "customer_email": null,
        "customer_phone": null, "x": null
    });
    let bytes = foreign_container(&schema.to_string(), &[record]);
    let err = ContainerReader::new(&bytes[..]).err().expect("refused");
    assert_eq!(err.code(), "unknown_schema");
    assert!(err.to_string().contains("contains itself"), "{err}");
}

/// The first published version of each schema (`schemas/history/v1/`, as first committed), with the
/// current one: the contract's baseline.
fn first_and_current() -> Vec<(&'static str, Schema, Schema)> {
    macro_rules! pair {
        ($($name:literal),*) => {
            vec![$((
                $name,
                Schema::parse_str(include_str!(concat!("../../../schemas/history/v1/", $name, ".avsc"))).unwrap(),
                Schema::parse_str(include_str!(concat!("../../../schemas/", $name, ".avsc"))).unwrap(),
            )),*]
        };
    }
    pair!(
        "email_event",
        "chat_event",
        "phone_event",
        "social_event",
        "timeline_entry",
        "profile",
        "profile_merge",
        "dead_letter",
        "intervention"
    )
}

/// Every change since a schema's first version kept it fully compatible both ways: current
/// readers read what first-version writers wrote, and first-version readers read what current
/// writers write (a field added has a default; nothing was removed, renamed or retyped).
#[test]
fn every_schema_stays_compatible_with_its_first_version() {
    use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
    for (name, first, current) in first_and_current() {
        let reads_old = SchemaCompatibility::can_read(&first, &current);
        assert_eq!(reads_old.ok(), Some(Compatibility::Full), "{name}: current readers of first-version data");
        let old_reads = SchemaCompatibility::can_read(&current, &first);
        assert_eq!(old_reads.ok(), Some(Compatibility::Full), "{name}: first-version readers of current data");
    }
    // The check has teeth: a field added without a default is not backward compatible.
    let (_, first, _) = first_and_current().remove(0);
    let mut broken: serde_json::Value = serde_json::from_str(&first.canonical_form()).unwrap();
    broken["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "locale", "type": "string"}));
    let broken = Schema::parse_str(&broken.to_string()).unwrap();
    assert!(SchemaCompatibility::can_read(&first, &broken).is_err());
}

/// The fields added since: data resolves across versions, the default filling in.
#[test]
fn records_resolve_across_versions() {
    use omnistitch_moments::{Action, Intervention, MomentType, Priority};
    let schemas = first_and_current();
    let of = |n: &str| schemas.iter().find(|(name, ..)| *name == n).map(|(_, a, b)| (a, b)).unwrap();
    // An intervention from a first-version writer (no `key_event_id`) reads as "".
    let (first, current) = of("intervention");
    let record = Intervention {
        intervention_id: Intervention::derive_id("acme", MomentType::DetractorSurvey, "e9"),
        key_event_id: "e9".into(),
        tenant: "acme".into(),
        profile_id: "p".into(),
        moment_type: MomentType::DetractorSurvey,
        priority: Priority::High,
        detected_at: EventTime(1_767_571_200_000),
        reason: "CSAT 1".into(),
        case_id: None,
        evidence: vec![],
        recommended_action: Action::ServiceRecovery,
        recommended_channel: Channel::Email,
        expires_at: EventTime(1_767_657_600_000),
    };
    let mut value = apache_avro::to_value(&record).unwrap();
    if let Value::Record(fields) = &mut value {
        fields.retain(|(k, _)| k != "key_event_id");
    }
    let old_bytes =
        GenericDatumWriter::builder(first).build().unwrap().write_value_to_vec(value.resolve(first).unwrap()).unwrap();
    let read = GenericDatumReader::builder(first).reader_schema(current).build().unwrap();
    let back: Intervention = apache_avro::from_value(&read.read_value(&mut &old_bytes[..]).unwrap()).unwrap();
    assert_eq!(back, Intervention { key_event_id: "".into(), ..record.clone() });
    // A current intervention read by a first-version reader: the new field skipped.
    let new_bytes = OutputEncoder::new().encode(OutputKind::Intervention, &record).unwrap();
    let read = GenericDatumReader::builder(current).reader_schema(first).build().unwrap();
    let Value::Record(fields) = read.read_value(&mut &new_bytes[..]).unwrap() else { panic!("a record") };
    assert!(fields.iter().all(|(k, _)| k != "key_event_id"));
    assert!(fields.iter().any(|(k, v)| k == "reason" && *v == Value::String("CSAT 1".into())));
    // A phone event from a first-version writer (no `customer_line_type`) decodes as None.
    let (first, _) = of("phone_event");
    let WireEvent::Phone(ev) = sample(Channel::Phone, EventKind::CallStarted, 1) else { panic!("phone") };
    let mut value = apache_avro::to_value(&ev).unwrap();
    if let Value::Record(fields) = &mut value {
        fields.retain(|(k, _)| k != "customer_line_type");
    }
    let old_bytes =
        GenericDatumWriter::builder(first).build().unwrap().write_value_to_vec(value.resolve(first).unwrap()).unwrap();
    let d = omnistitch_codec::SchemaDecoder::new(Channel::Phone, omnistitch_codec::contract::intern(first.clone()))
        .unwrap();
    let WireEvent::Phone(p) = d.decode(&old_bytes).unwrap() else { panic!("phone") };
    assert_eq!(p.customer_line_type, None);
    assert_eq!(p.call_id, "K-1");
}

/// A datum of another schema version cut anywhere is refused, never read as one whose last
/// fields are missing (apache-avro reads a union index or a string cut off by the end of the
/// input as a null); the whole datum reads.
#[test]
fn every_cut_of_a_datum_of_another_version_is_refused() {
    // The first phone schema (without its last field), and a chat schema with a field more
    // (a nullable string, last: cut before it, its union index is what is missing).
    let (_, first_phone, _) = first_and_current().into_iter().find(|(n, ..)| *n == "phone_event").unwrap();
    let mut chat: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::CHAT_EVENT_AVSC).unwrap();
    chat["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "x", "type": ["null", "string"], "default": null}));
    let chat = Schema::parse_str(&chat.to_string()).unwrap();
    for (writer, channel, kind) in
        [(first_phone, Channel::Phone, EventKind::CallStarted), (chat, Channel::Chat, EventKind::Message)]
    {
        let name = channel.to_string();
        let value = match sample(channel, kind, 1) {
            WireEvent::Phone(e) => apache_avro::to_value(&e),
            WireEvent::Chat(e) => apache_avro::to_value(&e),
            WireEvent::Email(e) => apache_avro::to_value(&e),
            WireEvent::Social(e) => apache_avro::to_value(&e),
        };
        let Value::Record(mut fields) = value.unwrap() else { panic!("a record") };
        let known: Vec<String> = match &writer {
            Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
            _ => panic!("a record schema"),
        };
        fields.retain(|(k, _)| known.contains(k));
        if known.iter().any(|k| k == "x") {
            fields.push(("x".into(), Value::Union(0, Box::new(Value::Null))));
        }
        let bytes = GenericDatumWriter::builder(&writer)
            .build()
            .unwrap()
            .write_value_to_vec(Value::Record(fields).resolve(&writer).unwrap())
            .unwrap();
        let d = omnistitch_codec::SchemaDecoder::new(channel, omnistitch_codec::contract::intern(writer)).unwrap();
        assert!(!d.is_bundled());
        assert!(d.decode(&bytes).is_ok(), "{name}: the whole datum");
        for cut in 0..bytes.len() {
            let err = d.decode(&bytes[..cut]).err();
            assert!(err.is_some(), "{name}: cut at {cut} of {} read as a record", bytes.len());
        }
    }
    // The generic reader of the bundled schema refuses every cut too.
    let bytes = encode_input(&sample(Channel::Chat, EventKind::Message, 1)).unwrap();
    assert!(omnistitch_codec::datum::decode_generic(Channel::Chat, &bytes).is_ok());
    for cut in 0..bytes.len() {
        assert!(omnistitch_codec::datum::decode_generic(Channel::Chat, &bytes[..cut]).is_err(), "cut at {cut}");
    }
}

/// A writer schema with a `fixed` too large to allocate for every datum is refused as a
/// schema (its records dead-lettered), not read until an allocation aborts the process.
#[test]
fn a_writer_schema_with_a_huge_fixed_is_refused() {
    let mut schema: serde_json::Value = serde_json::from_str(omnistitch_codec::contract::CHAT_EVENT_AVSC).unwrap();
    for (i, pad) in [
        serde_json::json!({"type": "fixed", "name": "Pad", "size": 1u64 << 40}),
        serde_json::json!({"type": "fixed", "name": "Dec", "size": 1u64 << 20, "logicalType": "decimal", "precision": 4}),
    ]
    .into_iter()
    .enumerate()
    {
        schema["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": format!("pad{i}"), "type": pad}));
        let writer = omnistitch_codec::contract::intern(Schema::parse_str(&schema.to_string()).unwrap());
        let err = omnistitch_codec::SchemaDecoder::new(Channel::Chat, writer).expect_err("refused");
        assert_eq!(err.code(), "unknown_schema");
        assert!(err.to_string().contains("a fixed of"), "{err}");
        schema["fields"].as_array_mut().unwrap().pop();
    }
    // A small one is a field like any other.
    schema["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "pad", "default": "0123",
        "type": {"type": "fixed", "name": "Pad", "size": 4}}));
    let writer = omnistitch_codec::contract::intern(Schema::parse_str(&schema.to_string()).unwrap());
    assert!(omnistitch_codec::SchemaDecoder::new(Channel::Chat, writer).is_ok());
}
