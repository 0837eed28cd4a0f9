package dev.ravit.demo

import android.graphics.Bitmap
import dev.ravit.core.ImagePreprocessor

/** Camera frames and gallery pictures -> ARGB pixels of the model's input size. */
object FramePixels {
    /**
     * Center-crops [bitmap] to the model's aspect ratio, resizes it with the core's
     * antialiased bilinear filter (the resize the training data went through) and rotates
     * it upright by [rotationDegrees] (CameraX's clockwise rotation).
     *
     * The crop and resize happen before the rotation, on the unrotated frame with the
     * target size swapped for 90/270 degrees, so only the small image is rotated.
     */
    fun fromBitmap(bitmap: Bitmap, rotationDegrees: Int, width: Int, height: Int): IntArray {
        val w = bitmap.width
        val h = bitmap.height
        val pixels = IntArray(w * h)
        bitmap.getPixels(pixels, 0, w, 0, 0, w, h)
        val swap = (rotationDegrees / 90) % 2 != 0
        val dstW = if (swap) height else width
        val dstH = if (swap) width else height
        val small = ImagePreprocessor.centerCropResize(pixels, w, h, dstW, dstH)
        return ImagePreprocessor.rotate(small, dstW, dstH, rotationDegrees)
    }
}
