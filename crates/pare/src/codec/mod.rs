//! Deep Compression's storage stage and pare's compressed model file: canonical Huffman
//! coding ([`huffman`]) of symbol streams ([`stream`]), the relative sparse index with filler
//! zeros ([`sparse`]), and the file format with its byte accounting ([`file`](mod@file)).

pub mod bits;
pub mod file;
pub mod huffman;
mod reader;
pub mod sparse;
pub mod stream;

pub use file::{
    decode, encode, read, smallest_codebook_encoding, write, Encoding, FileBytes, Plan, TensorBytes,
};
