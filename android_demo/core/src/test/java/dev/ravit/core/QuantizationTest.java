package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class QuantizationTest {
    private static final int[] SHAPE = {1, 4};

    @Test
    public void roundsHalfAwayFromZero() {
        assertEquals(1.0, Quantization.roundHalfAwayFromZero(0.5), 0);
        assertEquals(-1.0, Quantization.roundHalfAwayFromZero(-0.5), 0);
        assertEquals(3.0, Quantization.roundHalfAwayFromZero(2.5), 0);  // Not banker's rounding (2).
        assertEquals(-3.0, Quantization.roundHalfAwayFromZero(-2.5), 0);
        assertEquals(2.0, Quantization.roundHalfAwayFromZero(2.4999), 0);
        assertEquals(0.0, Quantization.roundHalfAwayFromZero(0.0), 0);
    }

    @Test
    public void dequantizeIsAffine() {
        TensorSpec spec = TensorSpec.of("t", DType.INT8, 0.5, -3, SHAPE);
        TensorData q = TensorData.ofInts(DType.INT8, SHAPE, new int[] {-128, -3, 0, 127});
        assertArrayEquals(new double[] {-62.5, 0.0, 1.5, 65.0}, Quantization.dequantize(q, spec), 0);
    }

    @Test
    public void dequantizeUint8ReadsUnsigned() {
        TensorSpec spec = TensorSpec.of("t", DType.UINT8, 1.0, 128, SHAPE);
        TensorData q = TensorData.ofInts(DType.UINT8, SHAPE, new int[] {0, 128, 200, 255});
        assertArrayEquals(new double[] {-128, 0, 72, 127}, Quantization.dequantize(q, spec), 0);
    }

    @Test
    public void quantizeRoundsAndClamps() {
        TensorSpec spec = TensorSpec.of("t", DType.INT8, 0.1, 2, SHAPE);
        TensorData q = Quantization.quantize(new double[] {0.05, -0.05, 100.0, -100.0}, spec);
        // 0.05/0.1 = 0.5 -> 1 (+2 = 3); -0.5 -> -1 (+2 = 1); saturate at 127 and -128.
        assertArrayEquals(new int[] {3, 1, 127, -128}, q.toIntArray());
        assertEquals(DType.INT8, q.dtype());
    }

    @Test
    public void requantizeFollowsThePythonRule() {
        TensorSpec out = TensorSpec.of("cls_out", DType.INT8, 0.01, 3, SHAPE);
        TensorSpec in = TensorSpec.of("cls_in", DType.UINT8, 0.02, 128, SHAPE);
        TensorData q = TensorData.ofInts(DType.INT8, SHAPE, new int[] {4, 2, -128, 127});
        // (q - 3) * 0.5 = 0.5, -0.5, -65.5, 62 -> 1, -1, -66, 62 (+128).
        TensorData r = Quantization.requantize(q, out, in);
        assertEquals(DType.UINT8, r.dtype());
        assertArrayEquals(new int[] {129, 127, 62, 190}, r.toIntArray());
    }

    @Test
    public void requantizeSaturates() {
        TensorSpec out = TensorSpec.of("a", DType.INT8, 0.05, 0, SHAPE);
        TensorSpec in = TensorSpec.of("b", DType.INT8, 0.01, 1, SHAPE);
        TensorData q = TensorData.ofInts(DType.INT8, SHAPE, new int[] {-128, -26, 25, 127});
        assertArrayEquals(new int[] {-128, -128, 126, 127}, Quantization.requantize(q, out, in).toIntArray());
    }

    @Test
    public void requantizeIdentityReturnsTheSameTensor() {
        TensorSpec spec = TensorSpec.of("a", DType.INT8, 0.05, 7, SHAPE);
        TensorData q = TensorData.ofInts(DType.INT8, SHAPE, new int[] {1, 2, 3, 4});
        assertSame(q, Quantization.requantize(q, spec, TensorSpec.of("b", DType.INT8, 0.05, 7, SHAPE)));
    }

    @Test
    public void requantizeToAndFromInt16() {
        TensorSpec out = TensorSpec.of("a", DType.INT8, 0.1, 5, SHAPE);
        TensorSpec in = TensorSpec.of("b", DType.INT16, 0.001, 0, SHAPE);
        TensorData q = TensorData.ofInts(DType.INT8, SHAPE, new int[] {5, 6, -128, 127});
        TensorData r = Quantization.requantize(q, out, in);
        assertArrayEquals(new int[] {0, 100, -13300, 12200}, r.toIntArray());
        assertEquals(DType.INT16, r.dtype());
    }

    @Test
    public void floatTensorsPassThrough() {
        TensorSpec f = TensorSpec.of("f", DType.FLOAT32, 0.0, 0, SHAPE);
        TensorSpec q8 = TensorSpec.of("q", DType.INT8, 0.5, 0, SHAPE);
        TensorData floats = TensorData.float32(SHAPE, new float[] {0.25f, -0.25f, 1.0f, 1000f});
        assertArrayEquals(new int[] {1, -1, 2, 127}, Quantization.requantize(floats, f, q8).toIntArray());
        TensorData back = Quantization.requantize(TensorData.ofInts(DType.INT8, SHAPE, new int[] {1, -1, 2, 3}), q8, f);
        assertArrayEquals(new float[] {0.5f, -0.5f, 1.0f, 1.5f}, back.floats(), 0f);
        assertEquals(floats, Quantization.requantize(floats, f, f));
    }

    @Test
    public void requantizeRejectsMismatchedData() {
        TensorSpec out = TensorSpec.of("cls_out", DType.INT8, 0.1, 0, SHAPE);
        TensorSpec in = TensorSpec.of("cls_in", DType.UINT8, 0.1, 0, SHAPE);
        TensorData wrong = TensorData.ofInts(DType.UINT8, SHAPE, new int[] {1, 2, 3, 4});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Quantization.requantize(wrong, out, in));
        assertTrue(e.getMessage(), e.getMessage().contains("uint8") && e.getMessage().contains("int8"));
    }

    @Test
    public void quantisedSpecNeedsAPositiveScale() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TensorSpec.of("cls_in", DType.INT8, 0.0, 0, SHAPE));
        assertTrue(e.getMessage(), e.getMessage().contains("cls_in") && e.getMessage().contains("scale"));
    }
}
