//! TEMPORARY stub of the codec API while the real codec is written on branch `codec`.
#![allow(missing_docs, clippy::all)]
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, Default, Debug)]
pub struct Message {
    mti: [u8; 4],
    fields: BTreeMap<usize, Bytes>,
}
impl Message {
    pub fn new(mti: [u8; 4]) -> Message {
        Message {
            mti,
            fields: BTreeMap::new(),
        }
    }
    pub fn mti(&self) -> [u8; 4] {
        self.mti
    }
    pub fn set_mti(&mut self, mti: [u8; 4]) {
        self.mti = mti
    }
    pub fn get(&self, n: usize) -> Option<&[u8]> {
        self.fields.get(&n).map(|b| &b[..])
    }
    pub fn get_bytes(&self, n: usize) -> Option<&Bytes> {
        self.fields.get(&n)
    }
    pub fn set(&mut self, n: usize, v: impl Into<Bytes>) {
        self.fields.insert(n, v.into());
    }
    pub fn remove(&mut self, n: usize) {
        self.fields.remove(&n);
    }
    pub fn has(&self, n: usize) -> bool {
        self.fields.contains_key(&n)
    }
    pub fn fields(&self) -> impl Iterator<Item = (usize, &Bytes)> {
        self.fields.iter().map(|(k, v)| (*k, v))
    }
}
pub struct FieldSpec {
    pub length: usize,
}
pub struct Spec;
#[derive(Debug)]
pub struct DecodeError {
    pub field: Option<usize>,
    pub partial: Option<Box<Message>>,
}
#[derive(Debug)]
pub struct EncodeError {
    pub field: usize,
}
#[derive(Debug)]
pub struct SpecError;
impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("spec")
    }
}
impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decode")
    }
}
impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("encode")
    }
}
impl Spec {
    pub fn load(_: &str) -> Result<Spec, SpecError> {
        Err(SpecError)
    }
    pub fn name(&self) -> &str {
        ""
    }
    pub fn decode(&self, _: &Bytes) -> Result<Message, DecodeError> {
        Err(DecodeError {
            field: None,
            partial: None,
        })
    }
    pub fn encode(&self, _: &Message, _: &mut BytesMut) -> Result<(), EncodeError> {
        Err(EncodeError { field: 0 })
    }
    pub fn field(&self, _: usize) -> Option<&FieldSpec> {
        None
    }
}
