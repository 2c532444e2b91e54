//! Writes an [`IntegerModel`] as the runtime's binary model file (`s4q_runtime::format`,
//! version 2). The field order here is the order `s4q_runtime::Model::parse` reads.

use super::{IntGrid, IntegerModel, Requant};

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

impl IntegerModel {
    /// The binary model file: header (magic, version, payload length, CRC-32) + payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let b = &self.blocks[0];
        let mut w = Writer(Vec::new());
        for d in [self.d_input, self.heads, self.modes, self.classes] {
            w.u16(d as u16);
        }
        w.u8(b.frac as u8);
        w.u8(self.pool_frac as u8);
        w.u8(b.state_shift as u8);
        w.u8(0);
        w.grid(self.input);
        let bits = self.weight_bits;
        w.packed(&self.enc_w, bits.enc);
        w.i32s(&self.enc_wz);
        w.requant(&self.enc);
        w.i32s(&b.a_re);
        w.i32s(&b.a_im);
        w.packed(&b.b_re, b.bits.b);
        w.packed(&b.b_im, b.bits.b);
        w.i32s(&b.b_z);
        w.packed(&b.c_re, b.bits.c);
        w.packed(&b.c_im, b.bits.c);
        w.i32s(&b.c_z);
        w.requant(&b.bu_rq);
        w.i32s(&b.w_max);
        for r in [&b.cy_rq, &b.dy_rq] {
            w.requant(r);
        }
        w.i32s(&b.state_z);
        w.i32s(&b.state_lo);
        w.i32s(&b.state_hi);
        w.grid(b.ssm_out);
        w.i8s(&b.gelu);
        w.i32(b.act_z);
        w.packed(&b.lin_w, b.bits.lin);
        w.i32s(&b.lin_wz);
        w.requant(&b.lin);
        w.i32s(&self.sigmoid);
        w.grid(b.glu_out);
        w.packed(&self.dec_w, bits.dec);
        w.i32s(&self.dec_wz);
        w.requant(&self.dec);
        w.i32s(&self.logits_z);
        w.i32(self.logits_qmin);
        w.i32(self.logits_qmax);
        let payload = w.0;
        let mut file = Vec::with_capacity(s4q_runtime::HEADER_LEN + payload.len());
        file.extend_from_slice(&s4q_runtime::MAGIC);
        file.extend_from_slice(&s4q_runtime::VERSION.to_le_bytes());
        file.extend_from_slice(&0u16.to_le_bytes());
        file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        file.extend_from_slice(&s4q_runtime::crc32(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        file
    }
}
