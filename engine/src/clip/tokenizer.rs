//! [`ClipTokenizer`]: CLIP's byte-level BPE with the OpenAI vocabulary
//! (`bpe_simple_vocab_16e6.txt`, 49408 ids), through the `instant-clip-tokenizer` crate,
//! which bundles that file and gives transformers' `CLIPTokenizer` ids up to and including
//! EOT (lower-casing, CLIP's word split, `</w>` word ends).
//!
//! Rows are `[BOS 49406, tokens…, EOT 49407]` padded to the context length with 49407
//! (as transformers pads; the encoder is causal and pools at EOT, so padding never
//! changes an output). A prompt longer than the context keeps BOS, its first
//! `context - 2` tokens and EOT, like transformers' truncation.

use instant_clip_tokenizer::{Token, Tokenizer};

use crate::{EngineError, Result};

/// The id every CLIP text encoder pools at (and pads with).
pub const END_OF_TEXT: u32 = 49407;
/// The first id of every row.
pub const START_OF_TEXT: u32 = 49406;
/// Size of the OpenAI vocabulary.
pub const VOCAB: usize = 49408;

/// CLIP's tokenizer for a given context length.
pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClipTokenizer(openai bpe 16e6, context {})",
            self.context
        )
    }
}

impl ClipTokenizer {
    /// The OpenAI vocabulary, rows of `context` ids (77 for every released CLIP).
    pub fn new(context: usize) -> Result<ClipTokenizer> {
        if context < 3 {
            return Err(EngineError::Config(format!(
                "text context of {context} positions cannot hold BOS, a token and EOT"
            )));
        }
        let inner = Tokenizer::new();
        debug_assert_eq!(inner.end_of_text().to_u16() as u32, END_OF_TEXT);
        Ok(ClipTokenizer { inner, context })
    }

    /// Ids per row.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Append one padded row for `text` to `out`; returns how many ids are real
    /// (BOS..=EOT, the attention mask's ones).
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> usize {
        let mut tokens: Vec<Token> = Vec::with_capacity(self.context);
        self.inner.encode(text, &mut tokens);
        tokens.truncate(self.context - 2);
        out.push(START_OF_TEXT);
        out.extend(tokens.iter().map(|t| t.to_u16() as u32));
        out.push(END_OF_TEXT);
        let real = tokens.len() + 2;
        out.extend(std::iter::repeat_n(END_OF_TEXT, self.context - real));
        real
    }

    /// `[texts.len(), context]` ids, row-major.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Vec<u32> {
        let mut out = Vec::with_capacity(texts.len() * self.context);
        for t in texts {
            self.encode_into(t.as_ref(), &mut out);
        }
        out
    }
}
