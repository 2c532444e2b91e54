//! Writes an [`IntegerModel`] as the runtime's binary model file (`s4q_runtime::format`:
//! version 2 for the paper's one-block model, version 3 for stacked blocks). The field order here is the order `s4q_runtime::Model::parse` reads.

use super::{ChannelAffine, IntBlock, IntGrid, IntegerModel, NormStage, Requant};

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn i8s(&mut self, v: &[i8]) {
        self.count(v.len());
        self.0.extend(v.iter().map(|&x| x as u8));
    }
    /// Weight codes packed at `bits` bits each, LSB-first (`s4q_runtime::format`).
    fn packed(&mut self, v: &[i8], bits: u32) {
        self.u8(bits as u8);
        self.count(v.len());
        self.0.extend(pack_codes(v, bits));
    }
    fn u8s(&mut self, v: &[u8]) {
        self.count(v.len());
        self.0.extend_from_slice(v);
    }
    fn i32s(&mut self, v: &[i32]) {
        self.count(v.len());
        for &x in v {
            self.i32(x);
        }
    }
    fn i64s(&mut self, v: &[i64]) {
        self.count(v.len());
        for &x in v {
            self.0.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn grid(&mut self, g: IntGrid) {
        self.i32(g.z);
        self.i32(g.qmin);
        self.i32(g.qmax);
    }
    fn requant(&mut self, r: &Requant) {
        self.i32s(&r.m);
        self.u8s(&r.shift);
        if let Some(b) = &r.bias {
            self.i64s(b);
        }
    }
}

/// `codes` at `bits` bits each, LSB-first, `ceil(n bits / 8)` bytes (the model file's and
/// the C export's packed layout). Each code must fit `bits` signed bits.
pub fn pack_codes(codes: &[i8], bits: u32) -> Vec<u8> {
    assert!((1..=8).contains(&bits), "code width {bits}");
    let lo = -(1i32 << (bits - 1));
    let hi = (1i32 << (bits - 1)) - 1;
    let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
    for (i, &c) in codes.iter().enumerate() {
        assert!(
            (lo..=hi).contains(&(c as i32)),
            "code {c} does not fit {bits} bits"
        );
        let v = (c as u32) & ((1u32 << bits) - 1);
        let bit = i * bits as usize;
        let (byte, off) = (bit / 8, bit % 8);
        out[byte] |= (v << off) as u8;
        if off + bits as usize > 8 {
            out[byte + 1] |= (v >> (8 - off)) as u8;
        }
    }
    out
}

impl Writer {
    /// A block's SSM, GELU table, pointwise conv and GLU grid; version 2 has the sigmoid
    /// table between the conv's requantization and the GLU grid.
    fn block_core(&mut self, b: &IntBlock, sigmoid_v2: Option<&[i32]>) {
        self.i32s(&b.a_re);
        self.i32s(&b.a_im);
        self.packed(&b.b_re, b.bits.b);
        self.packed(&b.b_im, b.bits.b);
        self.i32s(&b.b_z);
        self.packed(&b.c_re, b.bits.c);
        self.packed(&b.c_im, b.bits.c);
        self.i32s(&b.c_z);
        self.requant(&b.bu_rq);
        self.i32s(&b.w_max);
        for r in [&b.cy_rq, &b.dy_rq] {
            self.requant(r);
        }
        self.i32s(&b.state_z);
        self.i32s(&b.state_lo);
        self.i32s(&b.state_hi);
        self.grid(b.ssm_out);
        self.i8s(&b.gelu);
        self.i32(b.act_z);
        self.packed(&b.lin_w, b.bits.lin);
        self.i32s(&b.lin_wz);
        self.requant(&b.lin);
        if let Some(t) = sigmoid_v2 {
            self.i32s(t);
        }
        self.grid(b.glu_out);
    }

    fn affine(&mut self, a: &ChannelAffine) {
        self.i32s(&a.m);
        self.i64s(&a.bias);
        self.u8(a.shift as u8);
        self.grid(a.out);
    }

    /// A version-3 block: `frac`, `state_shift`, the stage kinds, the core, then the stages
    /// (a pre-norm's input range and, for LayerNorm, its root fraction bits first).
    fn block_v3(&mut self, b: &IntBlock) {
        self.u8(b.frac as u8);
        self.u8(b.state_shift as u8);
        self.u8(u8::from(b.residual.is_some()));
        let pre = b.pre_norm().is_some();
        self.u8(match (&b.norm, pre) {
            (None, _) => 0,
            (Some(NormStage::Layer(_)), false) => 1,
            (Some(NormStage::Batch(_)), false) => 2,
            (Some(NormStage::Layer(_)), true) => 3,
            (Some(NormStage::Batch(_)), true) => 4,
        });
        self.block_core(b, None);
        if let Some(r) = &b.residual {
            self.requant(&r.f);
            self.requant(&r.x);
            self.u8(r.frac as u8);
            self.grid(r.out);
        }
        if let Some((_, r)) = b.pre_norm() {
            self.i32(r.lo);
            self.i32(r.hi);
        }
        match &b.norm {
            None => {}
            Some(NormStage::Layer(ln)) => {
                if pre {
                    self.u8(ln.sqrt_frac as u8);
                }
                self.i64s(&[ln.e16 as i64]);
                self.affine(&ln.affine);
            }
            Some(NormStage::Batch(a)) => self.affine(a),
        }
    }
}

impl IntegerModel {
    /// Whether this is the paper's model (one block, no residual, no norm), which is written
    /// as format version 2, byte for byte as before deep blocks existed.
    pub fn is_single_plain_block(&self) -> bool {
        matches!(self.blocks.as_slice(), [b] if b.residual.is_none() && b.norm.is_none())
    }

    /// The binary model file: header (magic, version, payload length, CRC-32) + payload.
    /// Version 2 for the paper's one-block model, version 3 (blocks and their stages) for
    /// anything deeper; `s4q_runtime::format` documents both.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        for d in [self.d_input, self.heads, self.modes, self.classes] {
            w.u16(d as u16);
        }
        let v2 = self.is_single_plain_block();
        let first = &self.blocks[0];
        if v2 {
            w.u8(first.frac as u8);
            w.u8(self.pool_frac as u8);
            w.u8(first.state_shift as u8);
        } else {
            w.u8(self.blocks.len() as u8);
            w.u8(self.pool_frac as u8);
            w.u8(0);
        }
        w.u8(0);
        w.grid(self.input);
        let bits = self.weight_bits;
        w.packed(&self.enc_w, bits.enc);
        w.i32s(&self.enc_wz);
        w.requant(&self.enc);
        if v2 {
            w.block_core(first, Some(&self.sigmoid));
        } else {
            w.i32s(&self.sigmoid);
            for b in &self.blocks {
                w.block_v3(b);
            }
        }
        w.packed(&self.dec_w, bits.dec);
        w.i32s(&self.dec_wz);
        w.requant(&self.dec);
        w.i32s(&self.logits_z);
        w.i32(self.logits_qmin);
        w.i32(self.logits_qmax);
        let payload = w.0;
        let version = if v2 {
            s4q_runtime::VERSION_ONE_BLOCK
        } else {
            s4q_runtime::VERSION
        };
        let mut file = Vec::with_capacity(s4q_runtime::HEADER_LEN + payload.len());
        file.extend_from_slice(&s4q_runtime::MAGIC);
        file.extend_from_slice(&version.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        file.extend_from_slice(&s4q_runtime::crc32(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        file
    }
}
