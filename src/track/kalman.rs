//! Constant-velocity Kalman filter on the box state (cx, cy, w, h) with velocities, in
//! normalised image units and seconds.
//!
//! With a diagonal initial covariance, diagonal process and measurement noise and a motion
//! model that only couples each coordinate with its own velocity, the 8x8 covariance of the
//! usual SORT/ByteTrack filter stays block-diagonal: four independent (position, velocity)
//! filters of 2x2 each. That is what is implemented here, exactly, without a matrix crate.
//!
//! Noise follows ByteTrack/BoT-SORT (std weights 1/20 for positions, 1/160 for velocities,
//! relative to the box width for x/w and height for y/h), defined per frame at a reference
//! rate of 30 fps and scaled with the real time step, so prediction is correct at any
//! analysed frame rate.

use crate::types::BBox;

/// Reference frame rate the per-frame noise weights are defined at.
const REF_FPS: f64 = 30.0;
const STD_POS: f64 = 1.0 / 20.0;
const STD_VEL: f64 = 1.0 / 160.0;

/// One coordinate and its velocity: state (p, v), covariance [[a, b], [b, c]].
#[derive(Debug, Clone, Copy)]
struct Axis {
    p: f64,
    v: f64,
    a: f64,
    b: f64,
    c: f64,
}

impl Axis {
    fn new(p: f64, scale: f64) -> Axis {
        let sp = 2.0 * STD_POS * scale;
        let sv = 10.0 * STD_VEL * scale * REF_FPS;
        Axis { p, v: 0.0, a: sp * sp, b: 0.0, c: sv * sv }
    }

    fn predict(&mut self, dt: f64, scale: f64) {
        let k = (dt * REF_FPS).max(0.0);
        let qp = (STD_POS * scale).powi(2) * k;
        let qv = (STD_VEL * scale * REF_FPS).powi(2) * k;
        self.p += self.v * dt;
        self.a += 2.0 * dt * self.b + dt * dt * self.c + qp;
        self.b += dt * self.c;
        self.c += qv;
    }

    fn update(&mut self, z: f64, scale: f64) {
        let r = (STD_POS * scale).powi(2);
        let s = self.a + r;
        if s <= 0.0 || !s.is_finite() {
            return;
        }
        let (k0, k1) = (self.a / s, self.b / s);
        let y = z - self.p;
        self.p += k0 * y;
        self.v += k1 * y;
        let (a, b, c) = (self.a, self.b, self.c);
        self.a = a * (1.0 - k0);
        self.b = b * (1.0 - k0);
        self.c = c - k1 * b;
    }
}

/// Kalman state of one track.
#[derive(Debug, Clone, Copy)]
pub struct Kalman {
    cx: Axis,
    cy: Axis,
    w: Axis,
    h: Axis,
}

const MIN_SIZE: f64 = 1e-4;

impl Kalman {
    pub fn new(b: &BBox) -> Kalman {
        let (cx, cy, w, h) = xywh(b);
        Kalman {
            cx: Axis::new(cx, w),
            cy: Axis::new(cy, h),
            w: Axis::new(w, w),
            h: Axis::new(h, h),
        }
    }

    /// Advances the state by `dt` seconds.
    pub fn predict(&mut self, dt: f64) {
        let (w, h) = self.size();
        self.cx.predict(dt, w);
        self.cy.predict(dt, h);
        self.w.predict(dt, w);
        self.h.predict(dt, h);
        self.w.p = self.w.p.max(MIN_SIZE);
        self.h.p = self.h.p.max(MIN_SIZE);
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, b: &BBox) {
        let (cx, cy, w, h) = xywh(b);
        let (sw, sh) = (w.max(MIN_SIZE), h.max(MIN_SIZE));
        self.cx.update(cx, sw);
        self.cy.update(cy, sh);
        self.w.update(w, sw);
        self.h.update(h, sh);
        self.w.p = self.w.p.max(MIN_SIZE);
        self.h.p = self.h.p.max(MIN_SIZE);
    }

    /// Stops the size from drifting while the object is not observed (as ByteTrack does).
    pub fn freeze_size(&mut self) {
        self.w.v = 0.0;
        self.h.v = 0.0;
    }

    fn size(&self) -> (f64, f64) {
        (self.w.p.max(MIN_SIZE), self.h.p.max(MIN_SIZE))
    }

    pub fn bbox(&self) -> BBox {
        let (w, h) = self.size();
        BBox {
            x1: (self.cx.p - w / 2.0) as f32,
            y1: (self.cy.p - h / 2.0) as f32,
            x2: (self.cx.p + w / 2.0) as f32,
            y2: (self.cy.p + h / 2.0) as f32,
        }
    }

    /// Centre velocity, normalised units per second.
    pub fn velocity(&self) -> (f32, f32) {
        (self.cx.v as f32, self.cy.v as f32)
    }
}

fn xywh(b: &BBox) -> (f64, f64, f64, f64) {
    let (x1, y1, x2, y2) = (b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64);
    ((x1 + x2) / 2.0, (y1 + y2) / 2.0, (x2 - x1).max(MIN_SIZE), (y2 - y1).max(MIN_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_constant_velocity_and_predicts_with_dt() {
        let mut k = Kalman::new(&BBox { x1: 0.1, y1: 0.1, x2: 0.2, y2: 0.3 });
        // Moves +0.1 per second in x, observed at 5 fps.
        for i in 1..=20 {
            k.predict(0.2);
            let x = 0.1 + 0.02 * i as f32;
            k.update(&BBox { x1: x, y1: 0.1, x2: x + 0.1, y2: 0.3 });
        }
        let (vx, vy) = k.velocity();
        assert!((vx - 0.1).abs() < 0.01 && vy.abs() < 0.01, "{vx} {vy}");
        let x0 = k.bbox().x1;
        k.predict(1.0);
        assert!((k.bbox().x1 - x0 - 0.1).abs() < 0.01);
    }
}
