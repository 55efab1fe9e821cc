//! TFLite flatbuffer reader: [`Graph`] is the one subgraph of a `.tflite` file as plain
//! Rust data ([`TensorInfo`], [`OpInfo`], [`BuiltinOp`], [`OpOptions`]).
//!
//! The file is checked with the `flatbuffers` verifier against the part of the TFLite
//! schema (`tensorflow/lite/schema/schema.fbs`) that this reader follows, before any
//! field is read, so a truncated or corrupt file is an error, never a crash. Only what
//! model import needs is read: tensors (shape, type, quantization, constant data),
//! operators (builtin code, inputs, outputs, the options of the ops MoViNet uses) and
//! the graph's inputs and outputs.

use flatbuffers::{
    Follow, ForwardsUOffset, InvalidFlatbuffer, Table, Vector, Verifiable, Verifier,
    VerifierOptions,
};

/// Element type of a tensor (TFLite `TensorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    I32,
    U8,
    I64,
    I16,
    I8,
    Other(i8),
}

impl DType {
    fn from_tflite(v: i8) -> DType {
        match v {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::I32,
            3 => DType::U8,
            4 => DType::I64,
            7 => DType::I16,
            9 => DType::I8,
            o => DType::Other(o),
        }
    }

    /// Bytes per element, when the type has a fixed size this reader understands.
    pub fn size(self) -> Option<usize> {
        match self {
            DType::F32 | DType::I32 => Some(4),
            DType::F16 | DType::I16 => Some(2),
            DType::U8 | DType::I8 => Some(1),
            DType::I64 => Some(8),
            DType::Other(_) => None,
        }
    }
}

/// Per-tensor or per-channel affine quantization: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub dim: usize,
}

/// One tensor of the graph.
#[derive(Debug, Clone)]
pub struct TensorInfo<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Constant data, when the tensor is a constant.
    pub data: Option<&'a [u8]>,
    pub quant: Option<Quant>,
}

impl TensorInfo<'_> {
    /// Element count (saturating: a corrupt shape cannot overflow).
    pub fn elements(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// The builtin operators model import knows by name; anything else is `Other(code)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinOp {
    Add,
    AveragePool2d,
    Concatenation,
    Conv2d,
    DepthwiseConv2d,
    Dequantize,
    Logistic,
    Mul,
    Relu,
    Relu6,
    Reshape,
    Div,
    Mean,
    Squeeze,
    StridedSlice,
    Cast,
    Sum,
    Quantize,
    HardSwish,
    BroadcastTo,
    Conv3d,
    Other(i32),
}

impl BuiltinOp {
    fn from_code(c: i32) -> BuiltinOp {
        match c {
            0 => BuiltinOp::Add,
            1 => BuiltinOp::AveragePool2d,
            2 => BuiltinOp::Concatenation,
            3 => BuiltinOp::Conv2d,
            4 => BuiltinOp::DepthwiseConv2d,
            6 => BuiltinOp::Dequantize,
            14 => BuiltinOp::Logistic,
            18 => BuiltinOp::Mul,
            19 => BuiltinOp::Relu,
            21 => BuiltinOp::Relu6,
            22 => BuiltinOp::Reshape,
            40 => BuiltinOp::Mean,
            42 => BuiltinOp::Div,
            43 => BuiltinOp::Squeeze,
            45 => BuiltinOp::StridedSlice,
            53 => BuiltinOp::Cast,
            74 => BuiltinOp::Sum,
            114 => BuiltinOp::Quantize,
            117 => BuiltinOp::HardSwish,
            130 => BuiltinOp::BroadcastTo,
            132 => BuiltinOp::Conv3d,
            o => BuiltinOp::Other(o),
        }
    }
}

/// TFLite `Padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

/// TFLite `ActivationFunctionType` fused into an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedAct {
    None,
    Relu,
    ReluN1To1,
    Relu6,
    Tanh,
    SignBit,
    Other(i8),
}

impl FusedAct {
    fn from_tflite(v: i8) -> FusedAct {
        match v {
            0 => FusedAct::None,
            1 => FusedAct::Relu,
            2 => FusedAct::ReluN1To1,
            3 => FusedAct::Relu6,
            4 => FusedAct::Tanh,
            5 => FusedAct::SignBit,
            o => FusedAct::Other(o),
        }
    }
}

/// The options of the ops model import reads.
#[derive(Debug, Clone, PartialEq)]
pub enum OpOptions {
    Conv {
        padding: Padding,
        stride_h: i32,
        stride_w: i32,
        dilation_h: i32,
        dilation_w: i32,
        act: FusedAct,
    },
    Depthwise {
        padding: Padding,
        stride_h: i32,
        stride_w: i32,
        multiplier: i32,
        dilation_h: i32,
        dilation_w: i32,
        act: FusedAct,
    },
    Pool {
        padding: Padding,
        stride_h: i32,
        stride_w: i32,
        filter_h: i32,
        filter_w: i32,
        act: FusedAct,
    },
    Concat {
        axis: i32,
        act: FusedAct,
    },
    /// ADD, MUL, DIV
    Arith {
        act: FusedAct,
    },
    Reducer {
        keep_dims: bool,
    },
    None,
}

/// One operator of the graph.
#[derive(Debug, Clone)]
pub struct OpInfo {
    pub op: BuiltinOp,
    /// Tensor indices; `None` for an omitted optional input (-1 in the file).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub options: OpOptions,
}

/// The (single) subgraph of a TFLite model.
#[derive(Debug, Clone)]
pub struct Graph<'a> {
    pub tensors: Vec<TensorInfo<'a>>,
    pub ops: Vec<OpInfo>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub description: String,
}

/// Why a file could not be read as a TFLite model.
#[derive(Debug, thiserror::Error)]
pub enum TfliteError {
    #[error("too short to be a TFLite flatbuffer ({0} bytes)")]
    TooShort(usize),
    #[error("missing the TFLite file identifier \"TFL3\" (found {0:?})")]
    Identifier(String),
    #[error("corrupt flatbuffer: {0}")]
    Corrupt(#[from] InvalidFlatbuffer),
    #[error("{0}")]
    Structure(String),
}

// ---------------------------------------------------------------------------------------
// Typed views over the flatbuffer tables (the schema subset this reader follows).

macro_rules! table_view {
    ($name:ident) => {
        #[derive(Clone, Copy)]
        struct $name<'a> {
            tab: Table<'a>,
        }
        impl<'a> Follow<'a> for $name<'a> {
            type Inner = $name<'a>;
            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // SAFETY: forwarded contract of `Follow::follow`: `loc` is a table offset
                // the verifier has checked.
                $name {
                    tab: unsafe { Table::new(buf, loc) },
                }
            }
        }
    };
}

table_view!(ModelView);
table_view!(OperatorCodeView);
table_view!(SubGraphView);
table_view!(TensorView);
table_view!(QuantView);
table_view!(OperatorView);
table_view!(BufferView);
table_view!(OptionsView);

type Offsets<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;

// Field offsets (vtable slots) of the TFLite schema.
mod field {
    pub const MODEL_OPERATOR_CODES: u16 = 6;
    pub const MODEL_SUBGRAPHS: u16 = 8;
    pub const MODEL_DESCRIPTION: u16 = 10;
    pub const MODEL_BUFFERS: u16 = 12;
    pub const OPCODE_DEPRECATED: u16 = 4;
    pub const OPCODE_BUILTIN: u16 = 10;
    pub const SUBGRAPH_TENSORS: u16 = 4;
    pub const SUBGRAPH_INPUTS: u16 = 6;
    pub const SUBGRAPH_OUTPUTS: u16 = 8;
    pub const SUBGRAPH_OPERATORS: u16 = 10;
    pub const TENSOR_SHAPE: u16 = 4;
    pub const TENSOR_TYPE: u16 = 6;
    pub const TENSOR_BUFFER: u16 = 8;
    pub const TENSOR_NAME: u16 = 10;
    pub const TENSOR_QUANT: u16 = 12;
    pub const QUANT_SCALE: u16 = 8;
    pub const QUANT_ZERO_POINT: u16 = 10;
    pub const QUANT_DIM: u16 = 16;
    pub const OP_OPCODE_INDEX: u16 = 4;
    pub const OP_INPUTS: u16 = 6;
    pub const OP_OUTPUTS: u16 = 8;
    pub const OP_OPTIONS_TYPE: u16 = 10;
    pub const OP_OPTIONS: u16 = 12;
    pub const BUFFER_DATA: u16 = 4;
    pub const BUFFER_OFFSET: u16 = 6;
    pub const BUFFER_SIZE: u16 = 8;
}

// BuiltinOptions union tags this reader reads.
const OPT_CONV: u8 = 1;
const OPT_DEPTHWISE: u8 = 2;
const OPT_POOL: u8 = 5;
const OPT_CONCAT: u8 = 10;
const OPT_ADD: u8 = 11;
const OPT_MUL: u8 = 21;
const OPT_REDUCER: u8 = 27;
const OPT_DIV: u8 = 29;

impl Verifiable for ModelView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Offsets<OperatorCodeView>>(
                "operator_codes",
                field::MODEL_OPERATOR_CODES,
                true,
            )?
            .visit_field::<Offsets<SubGraphView>>("subgraphs", field::MODEL_SUBGRAPHS, true)?
            .visit_field::<ForwardsUOffset<&str>>("description", field::MODEL_DESCRIPTION, false)?
            .visit_field::<Offsets<BufferView>>("buffers", field::MODEL_BUFFERS, true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for OperatorCodeView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<i8>("deprecated_builtin_code", field::OPCODE_DEPRECATED, false)?
            .visit_field::<i32>("builtin_code", field::OPCODE_BUILTIN, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for SubGraphView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Offsets<TensorView>>("tensors", field::SUBGRAPH_TENSORS, true)?
            .visit_field::<ForwardsUOffset<Vector<i32>>>("inputs", field::SUBGRAPH_INPUTS, true)?
            .visit_field::<ForwardsUOffset<Vector<i32>>>("outputs", field::SUBGRAPH_OUTPUTS, true)?
            .visit_field::<Offsets<OperatorView>>("operators", field::SUBGRAPH_OPERATORS, true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for TensorView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<i32>>>("shape", field::TENSOR_SHAPE, false)?
            .visit_field::<i8>("type", field::TENSOR_TYPE, false)?
            .visit_field::<u32>("buffer", field::TENSOR_BUFFER, false)?
            .visit_field::<ForwardsUOffset<&str>>("name", field::TENSOR_NAME, false)?
            .visit_field::<ForwardsUOffset<QuantView>>("quantization", field::TENSOR_QUANT, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for QuantView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<f32>>>("scale", field::QUANT_SCALE, false)?
            .visit_field::<ForwardsUOffset<Vector<i64>>>(
                "zero_point",
                field::QUANT_ZERO_POINT,
                false,
            )?
            .visit_field::<i32>("quantized_dimension", field::QUANT_DIM, false)?
            .finish();
        Ok(())
    }
}

impl Verifiable for OperatorView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u32>("opcode_index", field::OP_OPCODE_INDEX, false)?
            .visit_field::<ForwardsUOffset<Vector<i32>>>("inputs", field::OP_INPUTS, false)?
            .visit_field::<ForwardsUOffset<Vector<i32>>>("outputs", field::OP_OUTPUTS, false)?
            .visit_union::<u8, _>(
                "builtin_options_type",
                field::OP_OPTIONS_TYPE,
                "builtin_options",
                field::OP_OPTIONS,
                false,
                |key, v, pos| match key {
                    OPT_CONV => v.verify_union_variant::<ForwardsUOffset<ConvOptionsCheck>>(
                        "Conv2DOptions",
                        pos,
                    ),
                    OPT_DEPTHWISE => v
                        .verify_union_variant::<ForwardsUOffset<DepthwiseOptionsCheck>>(
                            "DepthwiseConv2DOptions",
                            pos,
                        ),
                    OPT_POOL => v.verify_union_variant::<ForwardsUOffset<PoolOptionsCheck>>(
                        "Pool2DOptions",
                        pos,
                    ),
                    OPT_CONCAT => v.verify_union_variant::<ForwardsUOffset<ConcatOptionsCheck>>(
                        "ConcatenationOptions",
                        pos,
                    ),
                    OPT_ADD | OPT_MUL | OPT_DIV | OPT_REDUCER => v
                        .verify_union_variant::<ForwardsUOffset<ByteOptionCheck>>(
                            "ArithOptions",
                            pos,
                        ),
                    // Options of other ops are never read.
                    _ => Ok(()),
                },
            )?
            .finish();
        Ok(())
    }
}

/// Verifiers for the option tables this reader reads: `(vtable slot, scalar type)`.
macro_rules! options_check {
    ($name:ident, [$(($slot:expr, $ty:ty)),*]) => {
        struct $name;
        impl Verifiable for $name {
            fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
                v.visit_table(pos)?$(.visit_field::<$ty>(stringify!($slot), $slot, false)?)*.finish();
                Ok(())
            }
        }
    };
}
options_check!(
    ConvOptionsCheck,
    [(4, i8), (6, i32), (8, i32), (10, i8), (12, i32), (14, i32)]
);
options_check!(
    DepthwiseOptionsCheck,
    [
        (4, i8),
        (6, i32),
        (8, i32),
        (10, i32),
        (12, i8),
        (14, i32),
        (16, i32)
    ]
);
options_check!(
    PoolOptionsCheck,
    [(4, i8), (6, i32), (8, i32), (10, i32), (12, i32), (14, i8)]
);
options_check!(ConcatOptionsCheck, [(4, i32), (6, i8)]);
options_check!(ByteOptionCheck, [(4, i8)]);

impl Verifiable for BufferView<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<u8>>>("data", field::BUFFER_DATA, false)?
            .visit_field::<u64>("offset", field::BUFFER_OFFSET, false)?
            .visit_field::<u64>("size", field::BUFFER_SIZE, false)?
            .finish();
        Ok(())
    }
}

// Accessors. SAFETY (all of them): the whole model was verified against exactly these
// field types in `Graph::parse` before any view is created, so each slot holds the type
// read here.
impl<'a> ModelView<'a> {
    fn operator_codes(&self) -> Option<Vector<'a, ForwardsUOffset<OperatorCodeView<'a>>>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<Offsets<OperatorCodeView>>(field::MODEL_OPERATOR_CODES, None)
        }
    }
    fn subgraphs(&self) -> Option<Vector<'a, ForwardsUOffset<SubGraphView<'a>>>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<Offsets<SubGraphView>>(field::MODEL_SUBGRAPHS, None)
        }
    }
    fn description(&self) -> Option<&'a str> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<&str>>(field::MODEL_DESCRIPTION, None)
        }
    }
    fn buffers(&self) -> Option<Vector<'a, ForwardsUOffset<BufferView<'a>>>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<Offsets<BufferView>>(field::MODEL_BUFFERS, None)
        }
    }
}

impl OperatorCodeView<'_> {
    fn code(&self) -> i32 {
        // SAFETY: see the note above the impl blocks.
        let dep = unsafe { self.tab.get::<i8>(field::OPCODE_DEPRECATED, Some(0)) }.unwrap_or(0);
        // SAFETY: see the note above the impl blocks.
        let new = unsafe { self.tab.get::<i32>(field::OPCODE_BUILTIN, Some(0)) }.unwrap_or(0);
        new.max(dep as i32)
    }
}

impl<'a> SubGraphView<'a> {
    fn tensors(&self) -> Option<Vector<'a, ForwardsUOffset<TensorView<'a>>>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<Offsets<TensorView>>(field::SUBGRAPH_TENSORS, None)
        }
    }
    fn ints(&self, slot: u16) -> Option<Vector<'a, i32>> {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<ForwardsUOffset<Vector<i32>>>(slot, None) }
    }
    fn operators(&self) -> Option<Vector<'a, ForwardsUOffset<OperatorView<'a>>>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<Offsets<OperatorView>>(field::SUBGRAPH_OPERATORS, None)
        }
    }
}

impl<'a> TensorView<'a> {
    fn shape(&self) -> Option<Vector<'a, i32>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<Vector<i32>>>(field::TENSOR_SHAPE, None)
        }
    }
    fn dtype(&self) -> i8 {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<i8>(field::TENSOR_TYPE, Some(0)) }.unwrap_or(0)
    }
    fn buffer(&self) -> u32 {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<u32>(field::TENSOR_BUFFER, Some(0)) }.unwrap_or(0)
    }
    fn name(&self) -> Option<&'a str> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<&str>>(field::TENSOR_NAME, None)
        }
    }
    fn quant(&self) -> Option<QuantView<'a>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<QuantView>>(field::TENSOR_QUANT, None)
        }
    }
}

impl<'a> QuantView<'a> {
    fn scale(&self) -> Option<Vector<'a, f32>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<Vector<f32>>>(field::QUANT_SCALE, None)
        }
    }
    fn zero_point(&self) -> Option<Vector<'a, i64>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<Vector<i64>>>(field::QUANT_ZERO_POINT, None)
        }
    }
    fn dim(&self) -> i32 {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<i32>(field::QUANT_DIM, Some(0)) }.unwrap_or(0)
    }
}

impl<'a> OperatorView<'a> {
    fn opcode_index(&self) -> u32 {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<u32>(field::OP_OPCODE_INDEX, Some(0)) }.unwrap_or(0)
    }
    fn ints(&self, slot: u16) -> Option<Vector<'a, i32>> {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<ForwardsUOffset<Vector<i32>>>(slot, None) }
    }
    fn options_type(&self) -> u8 {
        // SAFETY: see the note above the impl blocks.
        unsafe { self.tab.get::<u8>(field::OP_OPTIONS_TYPE, Some(0)) }.unwrap_or(0)
    }
    fn options(&self) -> Option<OptionsView<'a>> {
        // SAFETY: see the note above the impl blocks (the table itself was verified for
        // every union tag whose fields are read).
        unsafe {
            self.tab
                .get::<ForwardsUOffset<OptionsView>>(field::OP_OPTIONS, None)
        }
    }
}

impl OptionsView<'_> {
    fn i8_at(&self, slot: u16, default: i8) -> i8 {
        // SAFETY: only called for slots verified as 1-byte scalars for this union tag.
        unsafe { self.tab.get::<i8>(slot, Some(default)) }.unwrap_or(default)
    }
    fn i32_at(&self, slot: u16, default: i32) -> i32 {
        // SAFETY: only called for slots verified as 4-byte scalars for this union tag.
        unsafe { self.tab.get::<i32>(slot, Some(default)) }.unwrap_or(default)
    }
}

impl<'a> BufferView<'a> {
    fn data(&self) -> Option<Vector<'a, u8>> {
        // SAFETY: see the note above the impl blocks.
        unsafe {
            self.tab
                .get::<ForwardsUOffset<Vector<u8>>>(field::BUFFER_DATA, None)
        }
    }
    fn offset_size(&self) -> (u64, u64) {
        // SAFETY: see the note above the impl blocks.
        let o = unsafe { self.tab.get::<u64>(field::BUFFER_OFFSET, Some(0)) }.unwrap_or(0);
        // SAFETY: see the note above the impl blocks.
        let s = unsafe { self.tab.get::<u64>(field::BUFFER_SIZE, Some(0)) }.unwrap_or(0);
        (o, s)
    }
}

fn padding(v: i8) -> Padding {
    if v == 1 {
        Padding::Valid
    } else {
        Padding::Same
    }
}

fn read_options(op: &OperatorView<'_>, code: BuiltinOp) -> OpOptions {
    let tag = op.options_type();
    let Some(o) = op.options() else {
        return OpOptions::None;
    };
    match (code, tag) {
        (BuiltinOp::Conv2d, OPT_CONV) => OpOptions::Conv {
            padding: padding(o.i8_at(4, 0)),
            stride_w: o.i32_at(6, 0),
            stride_h: o.i32_at(8, 0),
            act: FusedAct::from_tflite(o.i8_at(10, 0)),
            dilation_w: o.i32_at(12, 1),
            dilation_h: o.i32_at(14, 1),
        },
        (BuiltinOp::DepthwiseConv2d, OPT_DEPTHWISE) => OpOptions::Depthwise {
            padding: padding(o.i8_at(4, 0)),
            stride_w: o.i32_at(6, 0),
            stride_h: o.i32_at(8, 0),
            multiplier: o.i32_at(10, 0),
            act: FusedAct::from_tflite(o.i8_at(12, 0)),
            dilation_w: o.i32_at(14, 1),
            dilation_h: o.i32_at(16, 1),
        },
        (BuiltinOp::AveragePool2d, OPT_POOL) => OpOptions::Pool {
            padding: padding(o.i8_at(4, 0)),
            stride_w: o.i32_at(6, 0),
            stride_h: o.i32_at(8, 0),
            filter_w: o.i32_at(10, 0),
            filter_h: o.i32_at(12, 0),
            act: FusedAct::from_tflite(o.i8_at(14, 0)),
        },
        (BuiltinOp::Concatenation, OPT_CONCAT) => OpOptions::Concat {
            axis: o.i32_at(4, 0),
            act: FusedAct::from_tflite(o.i8_at(6, 0)),
        },
        (BuiltinOp::Add, OPT_ADD) | (BuiltinOp::Mul, OPT_MUL) | (BuiltinOp::Div, OPT_DIV) => {
            OpOptions::Arith {
                act: FusedAct::from_tflite(o.i8_at(4, 0)),
            }
        }
        (BuiltinOp::Mean | BuiltinOp::Sum, OPT_REDUCER) => OpOptions::Reducer {
            keep_dims: o.i8_at(4, 0) != 0,
        },
        _ => OpOptions::None,
    }
}

fn index(v: i32, len: usize, what: &str) -> Result<usize, TfliteError> {
    usize::try_from(v).ok().filter(|&i| i < len).ok_or_else(|| {
        TfliteError::Structure(format!(
            "{what} refers to tensor {v}, but the graph has {len} tensors"
        ))
    })
}

impl<'a> Graph<'a> {
    /// Parse and verify a TFLite model held in `bytes`; returns its first subgraph.
    pub fn parse(bytes: &'a [u8]) -> Result<Graph<'a>, TfliteError> {
        if bytes.len() < 8 {
            return Err(TfliteError::TooShort(bytes.len()));
        }
        if &bytes[4..8] != b"TFL3" {
            return Err(TfliteError::Identifier(
                String::from_utf8_lossy(&bytes[4..8]).into_owned(),
            ));
        }
        let opts = VerifierOptions {
            max_tables: 10_000_000,
            ..Default::default()
        };
        let model = flatbuffers::root_with_opts::<ModelView>(&opts, bytes)?;

        let codes: Vec<BuiltinOp> = model
            .operator_codes()
            .map(|v| v.iter().map(|c| BuiltinOp::from_code(c.code())).collect())
            .unwrap_or_default();
        let buffers = model.buffers();
        let subgraphs = model
            .subgraphs()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TfliteError::Structure("the model has no subgraph".into()))?;
        let sg = subgraphs.get(0);
        let tviews = sg
            .tensors()
            .ok_or_else(|| TfliteError::Structure("subgraph has no tensors".into()))?;
        let mut tensors = Vec::with_capacity(tviews.len());
        for (ti, t) in tviews.iter().enumerate() {
            let name = t.name().unwrap_or("").to_string();
            let mut shape = Vec::new();
            for d in t.shape().iter().flat_map(|v| v.iter()) {
                shape.push(usize::try_from(d).map_err(|_| {
                    TfliteError::Structure(format!(
                        "tensor {ti} ({name}) has a dynamic or negative dimension {d}"
                    ))
                })?);
            }
            let dtype = DType::from_tflite(t.dtype());
            let data = match buffers.as_ref() {
                Some(bufs) if (t.buffer() as usize) < bufs.len() => {
                    let b = bufs.get(t.buffer() as usize);
                    match b.data() {
                        Some(d) if !d.is_empty() => Some(d.bytes()),
                        _ => {
                            let (off, size) = b.offset_size();
                            if off > 1 && size > 0 {
                                let (o, s) = (off as usize, size as usize);
                                Some(bytes.get(o..o.saturating_add(s)).ok_or_else(|| {
                                    TfliteError::Structure(format!(
                                        "tensor {ti} ({name}): external buffer {o}+{s} lies outside the file"
                                    ))
                                })?)
                            } else {
                                None
                            }
                        }
                    }
                }
                Some(bufs) if t.buffer() as usize >= bufs.len() => {
                    return Err(TfliteError::Structure(format!(
                        "tensor {ti} ({name}) refers to buffer {} of {}",
                        t.buffer(),
                        bufs.len()
                    )))
                }
                _ => None,
            };
            if let (Some(d), Some(size)) = (data, dtype.size()) {
                let want = shape
                    .iter()
                    .try_fold(size, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| {
                        TfliteError::Structure(format!(
                            "tensor {ti} ({name}) shape {shape:?} overflows"
                        ))
                    })?;
                if d.len() != want {
                    return Err(TfliteError::Structure(format!(
                        "tensor {ti} ({name}) shape {shape:?} needs {want} bytes, its buffer has {}",
                        d.len()
                    )));
                }
            }
            let quant = t.quant().and_then(|q| {
                let scale: Vec<f32> = q.scale().map(|v| v.iter().collect()).unwrap_or_default();
                if scale.is_empty() {
                    return None;
                }
                let zero_point: Vec<i64> = q
                    .zero_point()
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                Some(Quant {
                    scale,
                    zero_point,
                    dim: q.dim().max(0) as usize,
                })
            });
            tensors.push(TensorInfo {
                name,
                shape,
                dtype,
                data,
                quant,
            });
        }
        let n = tensors.len();
        let mut ops = Vec::new();
        for (oi, o) in sg.operators().iter().flat_map(|v| v.iter()).enumerate() {
            let code = *codes.get(o.opcode_index() as usize).ok_or_else(|| {
                TfliteError::Structure(format!(
                    "operator {oi} uses opcode {} of {}",
                    o.opcode_index(),
                    codes.len()
                ))
            })?;
            let mut inputs = Vec::new();
            for i in o.ints(field::OP_INPUTS).iter().flat_map(|v| v.iter()) {
                inputs.push(if i < 0 {
                    None
                } else {
                    Some(index(i, n, &format!("operator {oi} input"))?)
                });
            }
            let mut outputs = Vec::new();
            for i in o.ints(field::OP_OUTPUTS).iter().flat_map(|v| v.iter()) {
                outputs.push(index(i, n, &format!("operator {oi} output"))?);
            }
            ops.push(OpInfo {
                op: code,
                inputs,
                outputs,
                options: read_options(&o, code),
            });
        }
        let list = |slot, what: &str| -> Result<Vec<usize>, TfliteError> {
            sg.ints(slot)
                .iter()
                .flat_map(|v| v.iter())
                .map(|i| index(i, n, what))
                .collect()
        };
        Ok(Graph {
            inputs: list(field::SUBGRAPH_INPUTS, "graph input")?,
            outputs: list(field::SUBGRAPH_OUTPUTS, "graph output")?,
            tensors,
            ops,
            description: model.description().unwrap_or("").to_string(),
        })
    }
}
